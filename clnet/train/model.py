"""`clnet.InferenceNetwork`: the network users make, with `fit` and `save` as methods.

The layers, forward pass, `predict` and `accuracy` live one layer down (clnet.nn.Network);
this subclass adds the conveniences that need training and saving, so no lower module imports
a higher one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..distributed import World
from ..nn.network import Network
from . import minibatch, onnx_io, saving
from .optimizers import Optimizer
from .schedules import Schedule
from .validation import History


class InferenceNetwork(Network):
    """A stack of fully-connected layers on one device (see clnet.nn.Network), which trains on
    mini-batches (`fit`) and saves to a file (`save`)."""

    def fit(self, x, y, cost: str = "quadratic", epochs: int = 1, batch_size: int = 32,
            optimizer: Optimizer | None = None, shuffle: bool = True, seed: int | None = None,
            progress: bool = True, checkpoint: str | Path | None = None, resume: bool = False,
            checkpoint_every: int = 1, world: World | None = None, sharded: bool = False,
            validation: tuple | None = None, early_stopping: int | None = None,
            schedule: Schedule | None = None) -> History:
        """Train on mini-batches, with validation, early stopping, schedules, checkpoints and
        resume, in one process or over MPI (`world`): see clnet.fit."""
        return minibatch.fit(self, x, y, cost, epochs, batch_size, optimizer, shuffle, seed, progress, checkpoint,
                             resume, checkpoint_every, world, sharded, validation, early_stopping, schedule)

    def save(self, path: str | Path) -> Path:
        """Write architecture, dtype and weights to one .npz file, atomically (`.npz` is added
        when the name has no suffix); returns the path written. See clnet.train.saving."""
        return saving.save(self, path)

    def to_onnx(self, path: str | Path) -> Path:
        """Write the network as an ONNX model (Gemm and activation nodes, dynamic batch size), for
        onnxruntime, TensorRT, OpenVINO...; returns the path written. See clnet.train.onnx_io."""
        return onnx_io.export(self, path)


def from_onnx(path: str | Path, ctx, dtype=None) -> InferenceNetwork:
    """The multilayer perceptron of the ONNX model at `path` (as torch.onnx.export writes one:
    Gemm or MatMul + Add, the activations clnet has, Flatten of a 2-D input) on the device of
    `ctx`; dtype: the model's (None) or another. An unsupported operator raises ValueError naming
    it and listing what is supported."""
    inputs, layers, saved_dtype, parameters = onnx_io.read(path)
    net = InferenceNetwork(ctx, inputs, layers, dtype=saved_dtype if dtype is None else dtype, init=None)
    for array, saved in zip(net.parameters(), parameters):
        array.set(np.ascontiguousarray(saved, dtype=net.dtype))
    return net


def load(path: str | Path, ctx, dtype=None) -> InferenceNetwork:
    """The network saved at `path`, on the device of `ctx`; dtype: keep the saved one (None) or
    convert to another (say float32 for a device without fp64)."""
    inputs, layers, saved_dtype, parameters = saving.read(path)
    net = InferenceNetwork(ctx, inputs, layers, dtype=saved_dtype if dtype is None else dtype, init=None)
    for array, saved in zip(net.parameters(), parameters):
        array.set(np.ascontiguousarray(saved, dtype=net.dtype))
    return net
