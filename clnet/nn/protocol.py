"""The layer protocol: all that networks, initialization, saving, checkpoints, fit and ONNX know
of a layer. A layer type is three classes, Deep Diamond's blueprint / inference / training triple:

    class Scale(Layer):                                  # the blueprint users write: no device
        def parameters(self, input_shape):               # named, shaped, with their initialization
            return [Parameter("scale", input_shape, init="ones")]
        def build(self, ctx, input_shape, dtype, arrays):
            return ScaleLayer(self, ctx, input_shape, dtype, arrays)

    class ScaleLayer(BuiltLayer):                        # inference, on views of the network's buffers
        def forward(self, x, out=None): ...              # (batch, *input_shape) -> (batch, *output_shape)
        def training(self, link): return ScaleTraining(self, link)

    class ScaleTraining(LayerTraining):                  # training, for one batch size
        def forward(self, step): ...                     # self.x -> self.out
        def backward(self): ...                          # self.delta -> self.gradients and self.grad_x

    clnet.register_layer(Scale)                          # saving and resuming find it by its name

Shapes are per sample: a layer maps (batch, *input_shape) to (batch, *output_shape), any rank.
The network lays every parameter out in its one parameter buffer (and the non-trainable ones,
such as running statistics, in its state buffer), so one optimizer launch updates them all.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyopencl.array as cla

from ..runtime.errors import ContextClosedError

INITS = ("weight", "bias", "zeros", "ones", "normal")


@dataclass(frozen=True)
class Parameter:
    """A named array of a layer.

    init: "weight" (drawn by the network's init method, He/Xavier/LeCun from fan_in and fan_out),
    "bias" (zero under the scaled methods, drawn under "uniform" and "gaussian"), "zeros",
    "ones", or "normal" (N(0, 1) under every method: embedding tables, as PyTorch's).
    trainable=False: state that training changes by itself (running statistics), or the
    parameters of a frozen layer, kept in the network's state buffer, saved and checkpointed, never
    touched by the optimizer. activation: the activation that follows it, which init="auto" picks
    He/Xavier/PyTorch's default by (None: the network's placement fills it in); a bias's fan_in is
    its layer's weights' (filled in the same way when left at 1). minimum: the least value it
    may hold (0 for a variance), which a loaded file or model must respect."""

    name: str
    shape: tuple[int, ...]
    init: str = "weight"
    fan_in: int = 1
    fan_out: int = 1
    trainable: bool = True
    activation: str | None = None
    minimum: float | None = None

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"parameter {self.name!r}: init must be one of {', '.join(INITS)}, got {self.init!r}")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))


@dataclass
class Link:
    """What a network gives the training half of its layer `index` for batches of `batch` rows."""

    batch: int
    x: cla.Array  # (batch, *input_shape): the batch, or the previous layer's `out`
    grad_x: cla.Array | None  # where backward writes dC/dx (the previous layer's delta); None: not needed
    gradients: dict[str, cla.Array]  # views of the network's gradient buffer, by parameter name
    arrays: dict[str, cla.Array]  # the layer's parameters and state, by name
    index: int  # the layer's position in the network (the counter of its dropout masks)
    is_output: bool  # the last layer: the cost reads its `out` and writes its `delta`


@dataclass
class Step:
    """What a training step's forward pass depends on: `train` (False: inference behaviour, no
    dropout, as validation runs), the dropout masks' Philox key and the step number, and
    `row_offset`: where this batch's rows start in the step's whole batch (an MPI rank's part of
    it; dropout masks are drawn by the position in the whole batch); `sync`: the ranks (None in
    one process)."""

    train: bool = True
    key: int = 0
    number: int = 0
    row_offset: int = 0
    sync: Sync | None = None  # the ranks this step's batch is split over (BatchNorm(sync=True) reads it)


@dataclass(frozen=True)
class Sync:
    """The MPI ranks a training step's batch is split over, as the layers that compute statistics
    of the whole batch see them (BatchNorm(sync=True)): `total(array)` sums a float64 host array
    over the ranks in place (a collective: every rank calls it in the same order); this rank holds
    `rows` of the step's `global_rows` samples."""

    total: Callable[[np.ndarray], np.ndarray]
    rank: int
    size: int
    rows: int
    global_rows: int


class Layer:
    """The blueprint of a layer: its shapes, parameters and config, no device memory.

    Subclasses override what differs from an elementwise layer without parameters. `activation`
    (and `alpha`) name the activation the layer applies last, where it applies one ("linear"
    otherwise): the cost checks the output layer's, and init="auto" picks He or Xavier by it.
    `dropout` > 0 marks a layer that drops outputs while training (never the last layer).
    `trainable` = False freezes the layer: its parameters stay as they are (kept with the state,
    no gradients), while it still computes as it does in training (batch statistics included, as a
    PyTorch module whose parameters do not require gradients); saving and resuming keep it."""

    activation: str = "linear"
    alpha: float | None = None
    dropout: float = 0.0
    trainable: bool = True

    def positions(self) -> int:
        """How many layer positions it takes (dropout masks are drawn by position): 1, or the
        layers inside a block."""
        return 1

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of a sample's output for a sample's input shape; ValueError when this layer
        cannot take that input."""
        return tuple(input_shape)

    def parameters(self, input_shape: tuple[int, ...]) -> list[Parameter]:
        """The layer's named arrays for this input shape, in a fixed order."""
        return []

    def build(self, ctx, input_shape: tuple[int, ...], dtype: np.dtype, arrays: dict[str, cla.Array]) -> BuiltLayer:
        """The inference half on `arrays` (views of the network's buffers, by parameter name)."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def training_bytes(self, batch: int, input_shape: tuple[int, ...], itemsize: int,
                       is_output: bool) -> dict[str, int]:
        """The device buffers (description: bytes) its training half allocates for `batch` rows,
        checked against the device before anything is allocated: here, an output and a gradient."""
        size = batch * math.prod(self.output_shape(input_shape)) * itemsize
        return {"outputs": size, "deltas": size}

    def config(self) -> dict:
        """The plain (JSON) arguments that rebuild this layer: by default the constructor's
        parameters, read from the attributes of the same names."""
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names = [p.name for p in inspect.signature(type(self).__init__).parameters.values()
                 if p.name != "self" and p.kind in named]
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        """The layer that `config()` describes."""
        return cls(**config)

    def __repr__(self) -> str:
        frozen = ", trainable=False" if not self.trainable else ""
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())}{frozen})"

    def brief(self) -> str:
        """A few words for a network's repr (the layer's repr unless it has a shorter form)."""
        return repr(self)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.config() == self.config() and other.trainable == self.trainable

    def __hash__(self) -> int:
        return hash(repr(self))


class BuiltLayer:
    """The inference half of a layer on one device: its parameters' views and a forward pass."""

    def __init__(self, spec: Layer, ctx, input_shape: tuple[int, ...], dtype: np.dtype,
                 arrays: dict[str, cla.Array]):
        self.spec, self.ctx, self.dtype = spec, ctx, np.dtype(dtype)
        self.input_shape = tuple(input_shape)
        self.output_shape = spec.output_shape(self.input_shape)
        self._arrays: dict[str, cla.Array] | None = dict(arrays)

    @property
    def activation(self) -> str:
        return self.spec.activation

    @property
    def alpha(self) -> float | None:
        return self.spec.alpha

    @property
    def dropout(self) -> float:
        return self.spec.dropout

    @property
    def arrays(self) -> dict[str, cla.Array]:
        """The layer's parameters and state by name (views of its network's buffers)."""
        if self._arrays is None:
            raise ContextClosedError(f"this {type(self.spec).__name__} layer's context is closed; its arrays were "
                                     "released")
        return self._arrays

    def parameters(self) -> list[cla.Array]:
        """The trainable parameters, in the order of the blueprint's `parameters`."""
        return [self.arrays[p.name] for p in self.spec.parameters(self.input_shape) if p.trainable]

    def empty(self, batch: int) -> cla.Array:
        """A new (batch, *output_shape) device array for this layer's output."""
        return cla.empty(self.ctx.queue, (batch, *self.output_shape), self.dtype)

    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        """The output for a batch x (batch, *input_shape), into `out` when given; queued."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def training(self, link: Link) -> LayerTraining:
        """The training half for the batch and neighbours that `link` describes."""
        raise NotImplementedError(f"{type(self).__name__}.training")

    def release(self) -> None:
        self._arrays = None

    def __repr__(self) -> str:
        return f"{self.spec!r} on {self.input_shape} -> {self.output_shape}, {self.dtype.name}"


class LayerTraining:
    """The training half of a layer for one batch size: it reads `x`, writes `out` (what the next
    layer reads), and from `delta` (dC/d(out), written by the next layer or the cost) writes the
    gradients of its parameters and, when `grad_x` is not None, dC/dx there.

    `replayable`: forward and backward queue only clnet kernels (ctx.kernel) whose arguments
    are the same every step, so the network records them once and replays them; a layer that
    queues anything else (pyopencl's own kernels, a per-step argument) must leave it False."""

    replayable = False

    def __init__(self, layer: BuiltLayer, link: Link):
        self.layer, self.ctx, self.batch, self.index = layer, layer.ctx, link.batch, link.index
        self.x, self.grad_x, self.is_output = link.x, link.grad_x, link.is_output
        self.gradients, self.arrays = link.gradients, link.arrays
        self.out: cla.Array | None = None
        self.delta: cla.Array | None = None

    @property
    def logits(self) -> cla.Array:
        """The output before the layer's activation (what the cross-entropy costs read)."""
        return self.out

    def forward(self, step: Step) -> None:
        """Queue out = the layer of x."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self) -> None:
        """Queue the gradients from delta, and dC/dx into grad_x unless it is None."""
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def release(self) -> None:
        self.x = self.grad_x = self.out = self.delta = None
        self.gradients, self.arrays = {}, {}


def in_place_delta(training: LayerTraining, shape: tuple[int, ...]) -> cla.Array | None:
    """For a layer without parameters whose backward pass can turn dC/d(out) into dC/dx where it
    stands (an activation, dropout, a reshape): its delta is the previous layer's (grad_x, seen
    with the output's shape). With no grad_x, an output layer gets a buffer of its own (the cost
    writes it); any other gets None: nothing before it needs a gradient."""
    if training.grad_x is not None:
        return training.grad_x.reshape(shape)
    if training.is_output:
        return cla.empty(training.ctx.queue, shape, training.layer.dtype)
    return None
