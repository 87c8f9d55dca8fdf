"""A network set up to train on one batch size: every buffer of a training step allocated once,
the layers' training halves wired (clnet.nn.chain), the passes recorded once and replayed.

    training = TrainingNetwork(net, x)      # shares net's weights; buffers for x's batch
    training.forward(); <cost writes training.output_gradient>; training.backward()
"""

from __future__ import annotations

import pyopencl.array as cla

from ..ops import blas
from ..ops.arrays import to_device_batch
from ..runtime import allocation
from ..runtime.errors import ContextClosedError
from ..runtime.kernels import LaunchPlan
from .chain import link_chain, needs_backward, positions
from .protocol import LayerTraining, Step, Sync


def training_buffers(net, batch: int) -> dict[str, int]:
    """The device buffers (description: bytes) a TrainingNetwork for `batch` rows allocates."""
    item, found, last = net.dtype.itemsize, {}, len(net.specs) - 1
    for i, (spec, placed) in enumerate(zip(net.specs, net.placements)):
        for kind, size in spec.training_bytes(batch, placed.input_shape, item, i == last).items():
            found[f"layer {i}'s {kind}"] = size
    if net._gradient_buffer is None:
        found["the gradient buffer"] = net.parameter_buffer.flat.size * item
    return found


class TrainingNetwork:
    """A network set up to train on the batch x: shares `net`'s weights and gradient buffer,
    and allocates every other buffer of a training step once, here.

    Layers with dropout draw their mask from Philox with key `dropout_key` and counter
    (element, layer, `step`): set both before `forward` (fit sets the step to the optimizer's
    step count; sgd counts its epochs), and the backward pass reuses the same mask. The element
    counts from `row_offset` rows into the step's whole batch (an MPI rank's part of it)."""

    def __init__(self, net, x):
        from .network import Network  # here: network.py imports this module

        if not isinstance(net, Network):
            raise TypeError(f"TrainingNetwork needs an InferenceNetwork, got {type(net).__name__}")
        self.net, self.ctx = net, net.ctx
        # the user's token ids are checked; a device array of reals is a network's own batch buffer
        ids = net.vocabulary if not isinstance(x, cla.Array) or x.dtype.kind in "iu" else None
        self.x = to_device_batch(self.ctx, x, net.input_shape, net.dtype, ids=ids)
        self.batch = self.x.shape[0]
        purpose, advice = f"training on batches of {self.batch}", "use a smaller batch_size or smaller layers"
        buffers = training_buffers(net, self.batch)
        allocation.check(self.ctx, buffers, purpose, advice)
        self.layers: list[LayerTraining] = []
        allocation.guarded(self.ctx, purpose, advice, lambda: self._allocate(net))
        # the layers' buffers (the gradient buffer counts itself)
        self.ctx.track(self, sum(size for name, size in buffers.items() if name != "the gradient buffer"))
        self.dropout_key, self.step, self.row_offset = 0, 0, 0
        self.sync: Sync | None = None  # the MPI ranks of the step (fit sets it: Step.sync)
        self._closed = False
        # the forward and backward passes are recorded once and replayed (Context.record), each
        # run of layers whose launches and arguments are the same every step as one plan
        self._plans: dict[tuple, LaunchPlan | None] = {}  # None: not replayable, run live
        self.ctx.own(self)

    def _allocate(self, net) -> None:
        views = iter(net.gradient_buffer.views)
        gradients = [{p.name: next(views) for p in placed.parameters if p.trainable} for placed in net.placements]
        self.layers = link_chain(net.layers, net.placements, self.batch, self.x, None, gradients,
                                 positions(0, net.specs), is_output=True)
        self._segments = self._split(self.layers)

    @staticmethod
    def _split(layers: list[LayerTraining]) -> list[tuple[int, tuple[LayerTraining, ...], bool]]:
        """The passes' parts, in forward order: (first layer, its training halves, replayable),
        each run of consecutive replayable layers one part (recorded as one plan), every other
        layer a part of its own (run live)."""
        parts: list = []
        for index, trainer in enumerate(layers):
            if trainer.replayable and parts and parts[-1][2]:
                parts[-1] = (parts[-1][0], parts[-1][1] + (trainer,), True)
            else:
                parts.append((index, (trainer,), trainer.replayable))
        return parts

    def _check_open(self) -> None:
        if self._closed:
            raise ContextClosedError("this training network's context is closed; its buffers were released")
        try:
            self.net._check_open()
        except ReferenceError:  # a network's own training network links back weakly (training_network)
            raise ContextClosedError("this training network's network was dropped; make a TrainingNetwork of a "
                                     "network you keep") from None

    @property
    def output(self) -> cla.Array:
        """The output of the last forward pass, (batch, *output_shape)."""
        self._check_open()
        return self.layers[-1].out

    @property
    def logits(self) -> cla.Array:
        """The output layer's output before its activation, of the last forward pass."""
        self._check_open()
        return self.layers[-1].logits

    @property
    def output_gradient(self) -> cla.Array:
        """Where the cost writes dC/d(output) before `backward` (the last layer's delta)."""
        self._check_open()
        return self.layers[-1].delta

    def forward(self, drop: bool = True) -> cla.Array:
        """Queue the forward pass over the batch, with dropout (of `dropout_key` and `step`) unless
        drop is False; returns the output (not waited on)."""
        self._check_open()
        step = Step(drop, self.dropout_key, self.step, self.row_offset, self.sync)
        for first, trainers, replayable in self._segments:
            if replayable:
                self._run(("forward", drop, first), lambda trainers=trainers: [t.forward(step) for t in trainers])
            else:
                trainers[0].forward(step)
        return self.layers[-1].out

    def backward(self, skip_output_derivative: bool = False) -> None:
        """Queue backpropagation from `output_gradient`: every layer's parameter gradients.

        skip_output_derivative: the output gradient is already dC/dz of the last layer's
        activation (as the cross-entropy costs give it)."""
        self._check_open()
        last = self.layers[-1]
        # a linear output layer has no activation derivative to skip (and may be a pooling layer
        # or a block, whose backward takes no such flag: cross-entropy on logits)
        skip_output_derivative = skip_output_derivative and last.layer.activation != "linear"
        for first, trainers, replayable in reversed(self._segments):
            def queue_pass(trainers=trainers) -> None:
                for trainer in reversed(trainers):
                    if not needs_backward(trainer):  # frozen, and nothing before it trains
                        continue
                    if trainer is last and skip_output_derivative:
                        trainer.backward(skip_activation_derivative=True)
                    else:
                        trainer.backward()
            if replayable:
                self._run(("backward", skip_output_derivative, first), queue_pass)
            else:
                queue_pass()

    def _run(self, key: tuple, queue_pass) -> None:
        """Queue part of a pass: replay its recorded plan, else run it (recording it)."""
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
        return self.net.gradient_buffer.views

    def release(self) -> None:
        if not self._closed and not self.ctx.closed:
            self.ctx.untrack(self)
        self._closed = True
        self.x = None
        self._plans.clear()
        for trainer in self.layers:
            trainer.release()

    def __repr__(self) -> str:
        return f"TrainingNetwork(batch {self.batch}, {self.net!r})"
