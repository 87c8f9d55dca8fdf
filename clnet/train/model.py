"""`clnet.InferenceNetwork`: the network users make, with `fit` and `save` as methods.

The layers, forward pass, `predict` and `accuracy` live one layer down (clnet.nn.Network);
this subclass adds the conveniences that need training and saving, so no lower module imports
a higher one.
"""

from __future__ import annotations

from pathlib import Path

from ..nn.network import Network
from ..runtime.context import Context
from . import evaluation, minibatch, onnx_export, onnx_import, saving


class InferenceNetwork(Network):
    """A sequence of layers on one device (see clnet.nn.Network), which trains on mini-batches
    (`fit`), saves to a file (`save`) and exports to ONNX (`to_onnx`)."""

    fit = minibatch.fit  # the same function as clnet.fit, with the network as self

    def evaluate(self, x, y=None, cost: str | None = None, sample_weight=None, class_weight=None
                 ) -> dict[str, float]:
        """The network's figures on (x, y), targets as fit takes them: "cost" (cost None: the one
        fit would choose; weighted by sample_weight and class_weight as fit's, the other figures
        not) and, for a classifier (or logits with cross-entropy), "accuracy", as fit's
        validation computes them; for any other output layer "mse", "mae" and "r2" (the
        coefficient of determination, averaged over the outputs as scikit-learn's r2_score).
        x may be an np.memmap, or an iterable of (x, y) or (x, y, sample_weight) batches with no
        y (clnet.train.evaluation). Called while another thread trains the network, it waits for
        that training to end."""
        return evaluation.evaluate(self, x, y, cost, sample_weight, class_weight)

    def __reduce__(self):
        """Pickles through its saved form (architecture, dtype, every parameter and state array;
        not the optimizer's state): it unpickles onto the default device (`clnet.Context()`,
        one per process). For files, `save` and `clnet.load`."""
        return _unpickle, (self.description(), self.host_arrays())

    def save(self, path: str | Path) -> Path:
        """Write architecture, dtype and weights to one .npz file, atomically (`.npz` is added
        when the name has no suffix); returns the path written. See clnet.train.saving."""
        return saving.save(self, path)

    def to_onnx(self, path: str | Path, opset: int | None = None) -> Path:
        """Write the network as an ONNX model (Gemm, Conv, pooling, BatchNormalization, Flatten
        and activation nodes; Gather, LayerNormalization and attention's nodes for sequences;
        dynamic batch size) of `opset` (13 to 21; None: the oldest that holds the layers) with the
        IR version it needs, for onnxruntime, TensorRT, OpenVINO...; returns the path written. See
        clnet.train.onnx_export."""
        return onnx_export.export(self, path, opset)


def from_onnx(path: str | Path, ctx, dtype=None) -> InferenceNetwork:
    """The network of the ONNX model at `path` (as torch.onnx.export writes one for a multilayer
    perceptron or a CNN: see clnet.train.onnx_import) on the device of `ctx`; dtype: the model's
    (None) or another. An unsupported operator or attribute raises ValueError naming it and the
    node."""
    input_shape, layers, saved_dtype, arrays = onnx_import.read(path)
    saving.check_values(path, saving.expected_arrays(input_shape, layers), arrays)  # before anything is made
    net = InferenceNetwork(ctx, input_shape, layers, dtype=saved_dtype if dtype is None else dtype, init=None)
    net.set_arrays(arrays)
    return net


_default_context: list = []  # the Context unpickled networks share, made on the first


def _unpickle(description: dict, arrays: dict) -> InferenceNetwork:
    """A pickled InferenceNetwork (its `__reduce__`) on the default device, checked as a file is."""
    input_shape, specs, dtype = saving.from_description("the pickled network", description)
    saving.check_values("the pickled network", saving.expected_arrays(input_shape, specs), arrays)
    if not _default_context or _default_context[0].closed:
        _default_context[:] = [Context()]
    net = InferenceNetwork(_default_context[0], input_shape, specs, dtype=dtype, init=None)
    net.set_arrays(arrays)
    return net


def load(path: str | Path, ctx, dtype=None) -> InferenceNetwork:
    """The network saved at `path`, on the device of `ctx`; dtype: keep the saved one (None) or
    convert to another (say float32 for a device without fp64). A network with a layer type
    defined outside clnet needs that type registered first (clnet.register_layer)."""
    input_shape, layers, saved_dtype, arrays = saving.read(path)
    net = InferenceNetwork(ctx, input_shape, layers, dtype=saved_dtype if dtype is None else dtype, init=None)
    net.set_arrays(arrays)
    return net
