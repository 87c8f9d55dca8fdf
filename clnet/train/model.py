"""`clnet.InferenceNetwork`: the network users make, with `fit` and `save` as methods.

The layers, forward pass, `predict` and `accuracy` live one layer down (clnet.nn.Network);
this subclass adds the conveniences that need training and saving, so no lower module imports
a higher one.
"""

from __future__ import annotations

from pathlib import Path

from ..nn.network import Network
from . import minibatch, onnx_export, onnx_import, saving


class InferenceNetwork(Network):
    """A sequence of layers on one device (see clnet.nn.Network), which trains on mini-batches
    (`fit`), saves to a file (`save`) and exports to ONNX (`to_onnx`)."""

    fit = minibatch.fit  # the same function as clnet.fit, with the network as self

    def save(self, path: str | Path) -> Path:
        """Write architecture, dtype and weights to one .npz file, atomically (`.npz` is added
        when the name has no suffix); returns the path written. See clnet.train.saving."""
        return saving.save(self, path)

    def to_onnx(self, path: str | Path) -> Path:
        """Write the network as an ONNX model (Gemm, Conv, pooling, BatchNormalization, Flatten
        and activation nodes, dynamic batch size), for onnxruntime, TensorRT, OpenVINO...;
        returns the path written. See clnet.train.onnx_export."""
        return onnx_export.export(self, path)


def from_onnx(path: str | Path, ctx, dtype=None) -> InferenceNetwork:
    """The network of the ONNX model at `path` (as torch.onnx.export writes one for a multilayer
    perceptron or a CNN: see clnet.train.onnx_import) on the device of `ctx`; dtype: the model's
    (None) or another. An unsupported operator or attribute raises ValueError naming it and the
    node."""
    input_shape, layers, saved_dtype, arrays = onnx_import.read(path)
    net = InferenceNetwork(ctx, input_shape, layers, dtype=saved_dtype if dtype is None else dtype, init=None)
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
