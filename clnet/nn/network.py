"""Networks of fully-connected layers: inference, and training on one batch.

    net = Network(ctx, 2, [FullyConnected(4, "tanh"), FullyConnected(1, "sigmoid")])
    net(x)                                  # (batch, outputs) device array
    training = TrainingNetwork(net, x)      # shares net's weights; buffers for x's batch

A network keeps all its parameters in one device buffer (`parameter_buffer`) and, once it
trains, all their gradients in another (`gradient_buffer`); the layers' arrays are views.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyopencl.array as cla

from ..ops import blas, memory
from ..ops.arrays import host_batch, to_device_batch
from ..runtime import allocation
from ..runtime.errors import ContextClosedError
from ..runtime.kernels import LaunchPlan
from . import initialization
from .layers import FullyConnected, FullyConnectedLayer, FullyConnectedTraining
from .parameters import FlatArrays


class Network:
    """A stack of fully-connected layers on one device, for float32 or float64.

    `inputs` is the width of the input; each layer's inputs are the previous one's outputs.
    The weights start initialized by `init` (clnet.INIT_METHODS; "auto": He for the relu
    family, Xavier for the others) from `seed`, so the same script gives the same network;
    init=None leaves every weight and bias at zero, to be set by the caller.
    """

    def __init__(self, ctx, inputs: int, layers: Sequence[FullyConnected], dtype=np.float32,
                 init: str | None = "auto", seed: int = 0):
        if isinstance(inputs, bool) or not isinstance(inputs, (int, np.integer)) or inputs < 1:
            raise ValueError(f"a network needs a positive whole number of inputs, got {inputs!r}")
        layers = list(layers)
        if not layers or not all(isinstance(layer, FullyConnected) for layer in layers):
            raise TypeError(f"layers must be a non-empty list of clnet.FullyConnected, got {layers!r}")
        if layers[-1].dropout:
            raise ValueError("dropout on the output layer is not supported: give it to a hidden layer")
        if init is not None and init not in initialization.INIT_METHODS:
            raise ValueError(f"unknown init method {init!r}; choose one of "
                             f"{', '.join(initialization.INIT_METHODS)}, or None")
        self.ctx = ctx
        self.dtype = ctx.real_dtype(dtype)
        self.inputs = int(inputs)
        widths = [self.inputs] + [layer.outputs for layer in layers]
        shapes = [shape for spec, width in zip(layers, widths) for shape in spec.parameter_shapes(width)]
        count = sum(math.prod(shape) for shape in shapes)
        self.parameter_buffer = FlatArrays(ctx, shapes, self.dtype,
                                           f"a network of {count:,} {self.dtype.name} parameters",
                                           "use fewer or smaller layers")
        views = iter(self.parameter_buffer.views)
        self.layers: list[FullyConnectedLayer] = [
            spec.build(ctx, width, self.dtype, next(views), next(views)) for spec, width in zip(layers, widths)]
        self.outputs = widths[-1]
        self._gradient_buffer: FlatArrays | None = None
        self._kept: FlatArrays | None = None
        self._training: dict[int, TrainingNetwork] = {}
        self.seed: int | None = None
        if init is not None:
            initialization.init(self, init, seed)
        ctx.own(self)

    def parameters(self) -> list[cla.Array]:
        """Every layer's weights and bias, in order: [W0, b0, W1, b1, ...] (views of one buffer)."""
        return self.parameter_buffer.views

    @property
    def gradient_buffer(self) -> FlatArrays:
        """One buffer for the gradients of every parameter, laid out like `parameter_buffer`;
        made on first use and shared by every TrainingNetwork of this network."""
        if self._gradient_buffer is None:
            self._gradient_buffer = self.parameter_buffer.like()
        return self._gradient_buffer

    @property
    def kept_buffer(self) -> FlatArrays:
        """The second parameter buffer (made on first use) that `keep_parameters` fills, or an
        optimizer step given keep=; what training falls back on when its cost stops being finite."""
        if self._kept is None:
            self._kept = self.parameter_buffer.like()
        return self._kept

    def training_network(self, batch: int) -> TrainingNetwork:
        """A TrainingNetwork for batches of `batch` rows whose x the caller fills, made on first
        use and kept, with its buffers and recorded passes, until the network is released: `fit`
        and its validation reuse it from call to call."""
        found = self._training.get(batch)
        if found is None or found._closed:
            x = cla.empty(self.ctx.queue, (batch, self.inputs), self.dtype)
            found = self._training[batch] = TrainingNetwork(self, x)
        return found

    def keep_parameters(self) -> None:
        """Copy every parameter into `kept_buffer`. One kernel launch, queued."""
        memory.copy(self.ctx, self.parameter_buffer.flat, self.kept_buffer.flat)

    def restore_parameters(self) -> None:
        """Put back the parameters of the last `keep_parameters`. Queued."""
        if self._kept is None:
            raise RuntimeError("restore_parameters needs an earlier keep_parameters")
        memory.copy(self.ctx, self._kept.flat, self.parameter_buffer.flat)

    def __call__(self, x) -> cla.Array:
        """The network's output for a batch x (batch, inputs), host or device: a device array."""
        x = to_device_batch(self.ctx, x, self.inputs, self.dtype)
        for layer in self.layers:
            out = cla.empty(self.ctx.queue, (x.shape[0], layer.outputs), self.dtype)
            x = layer.forward(x, out)
        return x

    def predict(self, x, batch_size: int = 4096) -> np.ndarray:
        """Class predictions for x as a numpy int array: the index of the largest output, or
        output > 0.5 for a single output. Runs in batches of batch_size rows."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        if not isinstance(x, cla.Array):
            x = host_batch(x, self.inputs, self.dtype)  # converted once, not per batch
        outputs = [self(x[i:i + batch_size]).get() for i in range(0, x.shape[0], batch_size)]
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

    def release(self) -> None:
        """Drop the device memory of the parameters and gradients (the context does this on close)."""
        for training in self._training.values():
            training.release()
        self._training.clear()
        for layer in self.layers:
            layer.release()
        for buffer in (self.parameter_buffer, self._gradient_buffer, self._kept):
            if buffer is not None:
                buffer.release()

    def __repr__(self) -> str:
        shape = " -> ".join([str(self.inputs)] + [f"{la.outputs} {la.activation}" for la in self.layers])
        return f"InferenceNetwork({shape}, {self.dtype.name}, on {self.ctx.info.name!r})"


def training_buffers(net: Network, batch: int) -> dict[str, int]:
    """The device buffers (description: bytes) a TrainingNetwork for `batch` rows allocates."""
    item, found = net.dtype.itemsize, {}
    for i, layer in enumerate(net.layers):
        kinds = ("outputs", "deltas", "logits") if i == len(net.layers) - 1 else ("outputs", "deltas")
        kinds += ("outputs after dropout",) if layer.dropout else ()
        for kind in kinds:
            found[f"layer {i}'s {kind} ({batch} x {layer.outputs})"] = batch * layer.outputs * item
    if net._gradient_buffer is None:
        found["the gradient buffer"] = net.parameter_buffer.flat.size * item
    return found


class TrainingNetwork:
    """A network set up to train on the batch x: shares `net`'s weights and gradient buffer,
    and allocates every other buffer of a training step once, here.

    Layers with dropout draw their mask from Philox with key `dropout_key` and counter
    (element, layer, `step`): set both before `forward` (fit sets the step to the optimizer's
    step count; sgd counts its epochs), and the backward pass reuses the same mask."""

    def __init__(self, net: Network, x):
        if not isinstance(net, Network):
            raise TypeError(f"TrainingNetwork needs an InferenceNetwork, got {type(net).__name__}")
        self.net, self.ctx = net, net.ctx
        self.x = to_device_batch(self.ctx, x, net.inputs, net.dtype)
        self.batch = self.x.shape[0]
        purpose, advice = f"training on batches of {self.batch}", "use a smaller batch_size or smaller layers"
        allocation.check(self.ctx, training_buffers(net, self.batch), purpose, advice)
        allocation.guarded(self.ctx, purpose, advice, lambda: self._allocate(net))
        self.dropout_key, self.step = 0, 0
        self._closed = False
        # forward and backward passes are recorded once and replayed (Context.record): the
        # buffers are fixed, and without dropout so is every argument
        self._plans: dict[tuple, LaunchPlan | None] = {}  # None: not replayable, run live
        self._replays = not any(layer.dropout for layer in net.layers)
        self.ctx.own(self)

    def _allocate(self, net: Network) -> None:
        gradients = iter(net.gradient_buffer.views)
        self.layers: list[FullyConnectedTraining] = []
        layer_input = self.x
        for index, layer in enumerate(net.layers):
            trainer = FullyConnectedTraining(layer, self.batch, layer_input, None, next(gradients), next(gradients),
                                             keep_z=layer is net.layers[-1], index=index)
            self.layers.append(trainer)
            layer_input = trainer.out
        # each layer after the first writes dC/dx into the previous layer's delta
        for previous, trainer in zip(self.layers, self.layers[1:]):
            trainer.grad_x = previous.delta

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

    def forward(self, drop: bool = True) -> cla.Array:
        """Queue the forward pass over the batch, with dropout (of `dropout_key` and `step`) unless
        drop is False; returns the output (not waited on)."""
        self._check_open()
        self._run(("forward", drop), lambda: [trainer.forward(self.dropout_key, self.step, drop)
                                              for trainer in self.layers])
        return self.layers[-1].a

    def backward(self, skip_output_derivative: bool = False) -> None:
        """Queue backpropagation from `output_gradient`: every layer's weight and bias gradient.

        skip_output_derivative: the output gradient is already dC/dz of the last layer (as the
        cross-entropy cost of a sigmoid layer gives it)."""
        self._check_open()
        last = len(self.layers) - 1
        self._run(("backward", skip_output_derivative),
                  lambda: [trainer.backward(skip_output_derivative and i == last)
                           for i, trainer in reversed(list(enumerate(self.layers)))])

    def _run(self, key: tuple, queue_pass) -> None:
        """Queue a pass: replay its recorded plan, else run it (recording it when it can be)."""
        if not self._replays:
            queue_pass()
            return
        key += (blas.settings_key(self.ctx, self.net.dtype),)
        if key in self._plans:
            plan = self._plans[key]
            if plan is None:  # it could not be recorded (CLBlast): live, without recording again
                queue_pass()
            else:
                self.ctx.replay(plan)
            return
        with self.ctx.record() as plan:
            queue_pass()
        self._plans[key] = plan if plan.complete else None

    def gradients(self) -> list[cla.Array]:
        """The gradients of the last `backward`, in `net.parameters()` order (views of
        `net.gradient_buffer`)."""
        self._check_open()
        return [g for trainer in self.layers for g in (trainer.grad_weights, trainer.grad_bias)]

    def release(self) -> None:
        self._closed = True
        self.x = None
        self._plans.clear()
        for trainer in self.layers:
            trainer.release()

    def __repr__(self) -> str:
        return f"TrainingNetwork(batch {self.batch}, {self.net!r})"
