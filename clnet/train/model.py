"""`clnet.InferenceNetwork`: the network users make, with `fit` and `save` as methods.

The layers, forward pass, `predict` and `accuracy` live one layer down (clnet.nn.Network);
this subclass adds the conveniences that need training and saving, so no lower module imports
a higher one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..nn.network import Network
from ..ops import cost_table, costs
from ..runtime.context import Context
from . import minibatch, onnx_export, onnx_import, saving
from .targets import default_cost, position_labels
from .validation import Validation


class InferenceNetwork(Network):
    """A sequence of layers on one device (see clnet.nn.Network), which trains on mini-batches
    (`fit`), saves to a file (`save`) and exports to ONNX (`to_onnx`)."""

    fit = minibatch.fit  # the same function as clnet.fit, with the network as self

    def evaluate(self, x, y, cost: str | None = None, sample_weight=None, class_weight=None) -> dict[str, float]:
        """The network's figures on (x, y), targets as fit takes them: "cost" (cost None: the one
        fit would choose; weighted by sample_weight and class_weight as fit's, the other figures
        not) and, for a classifier (or logits with cross-entropy), "accuracy", as fit's
        validation computes them;
        for any other output layer "mse", "mae" and "r2" (the coefficient of determination,
        averaged over the outputs as scikit-learn's r2_score). Called while another thread trains
        the network, it waits for that training to end."""
        activation = self.output_activation
        cost = costs.check_cost(cost or default_cost(activation, self.outputs, y)[0], activation)
        classes = self.is_classifier or (self.gives_logits and cost_table.find(cost).labels) or (
            position_labels(y, self.outputs) is not None)  # a label per position: token accuracy
        with self.using_buffers():  # its training networks are fit's: wait for a fit in another thread
            validation = Validation(self, (x, y, sample_weight), cost, accuracy=classes, class_weight=class_weight)
            found_cost, accuracy = validation.evaluate()
            if classes:
                return {"cost": found_cost, "accuracy": accuracy}
            a = self.outputs_of(validation.x).astype(np.float64).reshape(validation.rows, -1)
        t = validation.y.get().astype(np.float64).reshape(validation.rows, -1)
        residual, spread = a - t, ((t - t.mean(axis=0)) ** 2).sum(axis=0)
        r2 = np.where(spread > 0, 1 - (residual ** 2).sum(axis=0) / np.where(spread > 0, spread, 1), 0.0)
        return {"cost": found_cost, "mse": float(np.mean(residual ** 2)), "mae": float(np.mean(np.abs(residual))),
                "r2": float(r2.mean())}

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
