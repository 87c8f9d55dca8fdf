"""`clnet.InferenceNetwork`: the network users make, with `fit` and `save` as methods.

The layers, forward pass, `predict` and `accuracy` live one layer down (clnet.nn.Network);
this subclass adds the conveniences that need training and saving, so no lower module imports
a higher one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyopencl.array as cla

from ..nn.network import Network
from ..ops import costs
from . import minibatch, onnx_export, onnx_import, saving
from .targets import as_targets, default_cost


class InferenceNetwork(Network):
    """A sequence of layers on one device (see clnet.nn.Network), which trains on mini-batches
    (`fit`), saves to a file (`save`) and exports to ONNX (`to_onnx`)."""

    fit = minibatch.fit  # the same function as clnet.fit, with the network as self

    def evaluate(self, x, y, cost: str | None = None, batch_size: int = 4096) -> dict[str, float]:
        """The network's figures on (x, y), targets as fit takes them, computed in float64 on the
        host from the outputs: "cost" (cost None: the one fit would choose), and "accuracy" for a
        classifier, or "mse", "mae" and "r2" (the coefficient of determination, averaged over the
        outputs as scikit-learn's r2_score) for any other output layer."""
        activation = self.output_activation
        cost = costs.check_cost(cost or default_cost(activation, self.outputs, y)[0], activation)
        a = self.outputs_of(x, batch_size).astype(np.float64).reshape(-1, *self.output_shape)
        target = as_targets(self.ctx, y, a.shape[0], self.outputs, self.dtype, activation, cost)
        t = target.get().astype(np.float64) if isinstance(target, cla.Array) else np.asarray(target, np.float64)
        a2, t2 = a.reshape(len(a), -1), t.reshape(len(t), -1)
        found = {"cost": _cost(cost, activation, a2, t2)}
        if self.is_classifier:
            predicted = (a2[:, 0] > 0.5) if a2.shape[1] == 1 else a2.argmax(axis=1)
            wanted = (t2[:, 0] > 0.5) if t2.shape[1] == 1 else t2.argmax(axis=1)
            found["accuracy"] = float(np.mean(predicted == wanted))
        else:
            residual = a2 - t2
            spread = ((t2 - t2.mean(axis=0)) ** 2).sum(axis=0)
            explained = 1 - (residual ** 2).sum(axis=0) / np.where(spread > 0, spread, np.nan)
            found.update(mse=float(np.mean(residual ** 2)), mae=float(np.mean(np.abs(residual))),
                         r2=float(np.nanmean(np.where(spread > 0, explained, 0.0))))
        return found

    def save(self, path: str | Path) -> Path:
        """Write architecture, dtype and weights to one .npz file, atomically (`.npz` is added
        when the name has no suffix); returns the path written. See clnet.train.saving."""
        return saving.save(self, path)

    def to_onnx(self, path: str | Path, opset: int = onnx_export.OPSET) -> Path:
        """Write the network as an ONNX model (Gemm, Conv, pooling, BatchNormalization, Flatten
        and activation nodes, dynamic batch size) of `opset` (13 to 21) with the IR version it
        needs, for onnxruntime, TensorRT, OpenVINO...; returns the path written. See
        clnet.train.onnx_export."""
        return onnx_export.export(self, path, opset)


def _cost(name: str, activation: str, a: np.ndarray, y: np.ndarray) -> float:
    """The cost of outputs a for targets y (rows), as clnet.ops.costs defines it, in numpy."""
    if name == "quadratic":
        return float(((a - y) ** 2).sum() / (2 * len(a)))
    if name == "mse":
        return float(np.mean((a - y) ** 2))
    tiny = np.finfo(np.float64).tiny  # a saturated output: a large finite cost, not inf
    if activation == "softmax":
        return float(-(y * np.log(np.maximum(a, tiny))).sum() / len(a))
    return float(-(y * np.log(np.maximum(a, tiny)) + (1 - y) * np.log(np.maximum(1 - a, tiny))).sum() / len(a))


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
