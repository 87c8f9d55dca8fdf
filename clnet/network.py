"""Networks of fully-connected layers: inference, and training on one batch.

    net = clnet.InferenceNetwork(ctx, 2, [clnet.FullyConnected(4, "tanh"),
                                          clnet.FullyConnected(1, "sigmoid")])
    net(x)                                  # (batch, outputs) device array
    training = clnet.TrainingNetwork(net, x)   # shares net's weights; buffers for x's batch
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyopencl.array as cla

from .errors import ContextClosedError
from .launch import check_array
from .layers import FullyConnected, FullyConnectedLayer, FullyConnectedTraining


def _rows(x) -> int:
    return x.shape[0] if hasattr(x, "shape") and len(x.shape) else len(x)


def to_device_batch(ctx, data, columns: int, dtype: np.dtype, name: str = "x") -> cla.Array:
    """A (batch, columns) device array of `dtype` from a numpy-like or device array.

    Host data of any real numeric dtype is converted and uploaded; device data must already
    have the dtype (no silent conversion on the device) and is used as it is, not copied.
    """
    if isinstance(data, cla.Array):
        if data.dtype != dtype:
            raise TypeError(f"{name} on the device must have dtype {dtype.name} like the network, "
                            f"got {data.dtype.name}")
        check_array(ctx, data, name)
    else:
        host = np.asarray(data)
        if host.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {host.dtype}")
    shape = tuple(data.shape)
    if len(shape) != 2 or shape[1] != columns:
        raise ValueError(f"{name} must have shape (batch, {columns}), got {shape}")
    if shape[0] < 1:
        raise ValueError(f"{name} must have at least one row, got shape {shape}")
    if isinstance(data, cla.Array):
        return data
    return cla.to_device(ctx.queue, np.ascontiguousarray(host, dtype=dtype))


class InferenceNetwork:
    """A stack of fully-connected layers on one device, for float32 or float64.

    `inputs` is the width of the input; each layer's inputs are the previous one's outputs.
    The weights start at zero: initialize them with clnet.init or set them directly.
    """

    def __init__(self, ctx, inputs: int, layers: Sequence[FullyConnected], dtype=np.float32):
        if isinstance(inputs, bool) or not isinstance(inputs, (int, np.integer)) or inputs < 1:
            raise ValueError(f"a network needs a positive whole number of inputs, got {inputs!r}")
        layers = list(layers)
        if not layers or not all(isinstance(layer, FullyConnected) for layer in layers):
            raise TypeError(f"layers must be a non-empty list of clnet.FullyConnected, got {layers!r}")
        self.ctx = ctx
        self.dtype = ctx.real_dtype(dtype)
        self.inputs = int(inputs)
        widths = [self.inputs] + [layer.outputs for layer in layers]
        self.layers: list[FullyConnectedLayer] = [
            spec.build(ctx, width, self.dtype) for spec, width in zip(layers, widths)]
        self.outputs = widths[-1]
        ctx.own(self)

    def parameters(self) -> list[cla.Array]:
        """Every layer's weights and bias, in order: [W0, b0, W1, b1, ...]."""
        return [p for layer in self.layers for p in layer.parameters()]

    def __call__(self, x) -> cla.Array:
        """The network's output for a batch x (batch, inputs), host or device: a device array."""
        x = to_device_batch(self.ctx, x, self.inputs, self.dtype)
        for layer in self.layers:
            out = cla.empty(self.ctx.queue, (x.shape[0], layer.outputs), self.dtype)
            x = layer.forward(x, out)
        return x

    def predict(self, x, batch_size: int = 4096):
        """Class predictions for x as a numpy int array: the index of the largest output, or
        output > 0.5 for a single output. Runs in batches of batch_size rows."""
        outputs = [self(x[i:i + batch_size]).get() for i in range(0, _rows(x), batch_size)]
        scores = np.concatenate(outputs) if outputs else np.zeros((0, self.outputs))
        return (scores[:, 0] > 0.5).astype(np.int64) if self.outputs == 1 else scores.argmax(axis=1)

    def accuracy(self, x, labels) -> float:
        """The fraction of samples whose `predict` equals labels (class indices or one-hot rows)."""
        labels = np.asarray(labels.get() if isinstance(labels, cla.Array) else labels)
        if labels.ndim == 2 and labels.shape[1] > 1:
            labels = labels.argmax(axis=1)
        labels = labels.reshape(-1)
        predicted = self.predict(x)
        if labels.shape != predicted.shape:
            raise ValueError(f"labels must have one entry per sample ({predicted.shape[0]}), got {labels.shape}")
        return float(np.mean(predicted == labels))

    def fit(self, x, y, cost: str = "quadratic", epochs: int = 1, batch_size: int = 32, optimizer=None,
            shuffle: bool = True, seed: int | None = None, progress: bool = True) -> list[float]:
        """Train on mini-batches: see clnet.training.fit."""
        from .training import fit  # training sits above networks; the method is a convenience

        return fit(self, x, y, cost, epochs, batch_size, optimizer, shuffle, seed, progress)

    def save(self, path) -> None:
        """Write architecture, dtype and weights to one .npz file: see clnet.saving."""
        from .saving import save  # saving sits above networks; the method is a convenience

        save(self, path)

    def release(self) -> None:
        for layer in self.layers:
            layer.release()

    def __repr__(self) -> str:
        shape = " -> ".join([str(self.inputs)] + [f"{la.outputs} {la.activation}" for la in self.layers])
        return f"InferenceNetwork({shape}, {self.dtype.name}, on {self.ctx.info.name!r})"


class TrainingNetwork:
    """A network set up to train on the batch x: shares `net`'s weights, and allocates every
    buffer of a training step once, here."""

    def __init__(self, net: InferenceNetwork, x):
        if not isinstance(net, InferenceNetwork):
            raise TypeError(f"TrainingNetwork needs an InferenceNetwork, got {type(net).__name__}")
        self.net, self.ctx = net, net.ctx
        self.x = to_device_batch(self.ctx, x, net.inputs, net.dtype)
        self.batch = self.x.shape[0]
        self.layers: list[FullyConnectedTraining] = []
        layer_input = self.x
        for layer in net.layers:
            trainer = FullyConnectedTraining(layer, self.batch, layer_input, grad_x=None,
                                             keep_z=layer is net.layers[-1])
            self.layers.append(trainer)
            layer_input = trainer.a
        # each layer after the first writes dC/dx into the previous layer's delta
        for previous, trainer in zip(self.layers, self.layers[1:]):
            trainer.grad_x = previous.delta
        self._closed = False
        self.ctx.own(self)

    def _check_open(self) -> None:
        if self._closed:
            raise ContextClosedError("this training network's context is closed; its buffers were released")

    @property
    def output(self) -> cla.Array:
        """The output of the last forward pass, (batch, outputs)."""
        self._check_open()
        return self.layers[-1].a

    @property
    def logits(self) -> cla.Array:
        """The output layer's x @ W.T + b of the last forward pass, before its activation."""
        self._check_open()
        return self.layers[-1].z

    @property
    def output_gradient(self) -> cla.Array:
        """Where the cost writes dC/d(output) before `backward` (the last layer's delta)."""
        self._check_open()
        return self.layers[-1].delta

    def forward(self) -> cla.Array:
        """Queue the forward pass over the batch; returns the output (not waited on)."""
        self._check_open()
        for trainer in self.layers:
            trainer.forward()
        return self.layers[-1].a

    def backward(self, skip_output_derivative: bool = False) -> None:
        """Queue backpropagation from `output_gradient`: every layer's weight and bias gradient.

        skip_output_derivative: the output gradient is already dC/dz of the last layer (as the
        cross-entropy cost of a sigmoid layer gives it)."""
        self._check_open()
        for i, trainer in reversed(list(enumerate(self.layers))):
            trainer.backward(skip_output_derivative and i == len(self.layers) - 1)

    def gradients(self) -> list[cla.Array]:
        """The gradients of the last `backward`, in `net.parameters()` order."""
        self._check_open()
        return [g for trainer in self.layers for g in (trainer.grad_weights, trainer.grad_bias)]

    def update(self, learning_rate: float) -> None:
        """Queue one SGD step on every layer with the gradients of the last `backward`."""
        self._check_open()
        for trainer in self.layers:
            trainer.update(learning_rate)

    def release(self) -> None:
        self._closed = True
        self.x = None
        for trainer in self.layers:
            trainer.release()

    def __repr__(self) -> str:
        return f"TrainingNetwork(batch {self.batch}, {self.net!r})"
