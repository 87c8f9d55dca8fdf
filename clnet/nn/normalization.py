"""Normalization layers, PyTorch's (clnet.ops.norm):

    BatchNorm(eps, momentum, affine, sync, activation)
                                       per channel of (channels,) features or (channels, ...) images:
                                       the batch's statistics while training (running mean and
                                       unbiased variance updated with `momentum`), the running
                                       statistics at inference; an activation after it, fused
    LayerNorm(normalized_shape, eps, elementwise_affine)
                                       per sample, over the last dimensions

The scale (ones) and shift (zeros) are trainable parameters; the running statistics are state
(the network's state buffer: saved and checkpointed, never touched by the optimizer).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pyopencl.array as cla

from ..ops import activations, norm
from ..ops.arrays import vector_width
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Parameter, Step
from .registry import register_layer


def _real(name: str, value, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high or (
            low_open and value == low):
        raise ValueError(f"{name} must be a number in {'(' if low_open else '['}{low}, {high}], got {value!r}")
    return float(value)


class BatchNorm(Layer):
    """Batch normalization over the batch (and the pixels) of each channel: samples (channels,)
    as PyTorch's BatchNorm1d, or (channels, ...) as its BatchNorm1d/2d/3d. momentum: the weight
    of each batch in the running statistics (PyTorch's 0.1). sync: on MPI (`fit(world=...)`),
    the statistics of the whole step's batch over every rank, as PyTorch's SyncBatchNorm (two
    collectives per step; training then equals one process's), instead of each rank's part.
    activation: applied to the normalized values in the same passes (clnet.ACTIVATIONS but the
    row-wise softmax and log_softmax; a name or (name, alpha)), as an Activation layer after it
    would be, without that layer's passes over the data: resnet's BatchNorm2d + ReLU."""

    def __init__(self, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True, sync: bool = False,
                 activation: str | tuple[str, float] = "linear"):
        self.eps = _real("eps", eps, 0, math.inf, low_open=True)
        self.momentum = _real("momentum", momentum, 0, 1)
        self.affine = bool(affine)
        if not isinstance(sync, bool):
            raise ValueError(f"sync must be True or False, got {sync!r}")
        self.sync = sync
        self.activation, self.alpha = activations.parse(activation)
        if self.activation in activations.ROWWISE:
            raise ValueError(f"BatchNorm's activation cannot be {self.activation}, which works on whole rows: use "
                             f"an Activation({self.activation!r}) layer after Flatten")

    def config(self) -> dict:
        found = {"eps": self.eps, "momentum": self.momentum, "affine": self.affine}  # older files: no other key
        if self.sync:
            found["sync"] = True
        if self.activation != "linear":
            found["activation"] = activations.describe(self.activation, self.alpha)
        return found

    @staticmethod
    def segments(input_shape: tuple[int, ...], batch: int) -> norm.Segments:
        return batch, input_shape[0], math.prod(input_shape[1:])

    def parameters(self, input_shape):
        channels = input_shape[0]
        found = [Parameter("scale", (channels,), "ones"), Parameter("shift", (channels,), "zeros")] if self.affine \
            else []
        return found + [Parameter("running_mean", (channels,), "zeros", trainable=False),
                        Parameter("running_var", (channels,), "ones", trainable=False, minimum=0.0)]

    def build(self, ctx, input_shape, dtype, arrays) -> NormLayer:
        return NormLayer(self, ctx, input_shape, dtype, arrays)

    def brief(self) -> str:
        return "batch norm" if self.activation == "linear" else f"batch norm {self.activation}"


class LayerNorm(Layer):
    """Layer normalization over the last dimensions of each sample, normalized_shape (an int or
    a tuple: those dimensions), with a scale and shift of that shape (elementwise_affine)."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True):
        shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
        if not shape or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
                                for n in shape):
            raise ValueError(f"normalized_shape must be a positive whole number or a tuple of them, got "
                             f"{normalized_shape!r}")
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps = _real("eps", eps, 0, math.inf, low_open=True)  # 0 divides by zero on a constant sample
        self.elementwise_affine = bool(elementwise_affine)

    def output_shape(self, input_shape):
        n = len(self.normalized_shape)
        if tuple(input_shape[-n:]) != self.normalized_shape or len(input_shape) < n:
            raise ValueError(f"LayerNorm{self.normalized_shape} normalizes the last dimensions of samples, but they "
                             f"are of shape {input_shape}")
        return tuple(input_shape)

    def segments(self, input_shape: tuple[int, ...], batch: int) -> norm.Segments:
        features = math.prod(self.normalized_shape)
        return 1, batch * math.prod(input_shape) // features, features

    def parameters(self, input_shape):
        if not self.elementwise_affine:
            return []
        return [Parameter("scale", self.normalized_shape, "ones"), Parameter("shift", self.normalized_shape, "zeros")]

    def config(self) -> dict:
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine}

    def build(self, ctx, input_shape, dtype, arrays) -> NormLayer:
        return NormLayer(self, ctx, input_shape, dtype, arrays)

    def brief(self) -> str:
        return "layer norm"


class NormLayer(BuiltLayer):
    """The inference half of both: BatchNorm normalizes with the running statistics."""

    @property
    def batch_norm(self) -> bool:
        return isinstance(self.spec, BatchNorm)

    def layout(self, batch: int) -> tuple[int, int, str, str | None]:
        """(cols, segments, stats_at, affine_at) of the elementwise passes."""
        outer, segments, inner = self.spec.segments(self.input_shape, batch)
        affine = "scale" in self.arrays
        if not self.batch_norm:
            return inner, segments, "row", "col" if affine else None
        if inner == 1:  # (batch, channels) features: a row per sample, a column per channel
            return segments, segments, "col", "col" if affine else None
        return inner, segments, "row", "row" if affine else None

    def forward(self, x: cla.Array, out: cla.Array | None = None, stats: tuple | None = None,
                activate: bool = True) -> cla.Array:
        """out = x normalized (and the activation applied, unless not activate): with `stats`
        (mean, var) if given (the training half's batch statistics), else with the running
        statistics (BatchNorm) or x's own (LayerNorm)."""
        out = self.empty(x.shape[0]) if out is None else out
        batch = x.shape[0]
        if stats is None:
            if self.batch_norm:
                stats = self.arrays["running_mean"], self.arrays["running_var"]
            else:
                count = self.spec.segments(self.input_shape, batch)[1]
                stats = cla.empty(self.ctx.queue, count, self.dtype), cla.empty(self.ctx.queue, count, self.dtype)
                norm.moments(self.ctx, x, *stats, self.spec.segments(self.input_shape, batch))
        cols, segments, stats_at, affine_at = self.layout(batch)
        norm.normalize(self.ctx, x, *stats, self.arrays.get("scale"), self.arrays.get("shift"), self.spec.eps, out,
                       cols, segments, stats_at, affine_at, self.activation if activate else "linear", self.alpha)
        return out

    @property
    def activation(self) -> str:
        return getattr(self.spec, "activation", "linear")  # LayerNorm has none

    @property
    def alpha(self) -> float | None:
        return getattr(self.spec, "alpha", None)

    def training(self, link: Link) -> NormTraining:
        return NormTraining(self, link)

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        if not self.batch_norm:
            return self._layer_norm_onnx(graph, x, arrays)
        channels = self.input_shape[0]
        scale, shift = arrays.get("scale", np.ones(channels)), arrays.get("shift", np.zeros(channels))
        inputs = [x] + [graph.constant(a, hint) for a, hint in ((scale, "gamma"), (shift, "beta"),
                                                                 (arrays["running_mean"], "mean"),
                                                                 (arrays["running_var"], "var"))]
        z = graph.node("BatchNormalization", inputs, epsilon=self.spec.eps, momentum=1 - self.spec.momentum)
        return z if self.activation == "linear" else graph.activation(self.activation, self.alpha, z)


    def _layer_norm_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        """LayerNormalization over the last len(normalized_shape) axes from opset 17; below, its
        primitive nodes (ReduceMean with axes as an attribute, as opsets 13 to 17 have it)."""
        shape = self.spec.normalized_shape
        scale, shift = arrays.get("scale", np.ones(shape)), arrays.get("shift", np.zeros(shape))
        gamma, beta = graph.constant(scale, "gamma"), graph.constant(shift, "beta")
        if graph.opset >= 17:
            return graph.node("LayerNormalization", [x, gamma, beta], axis=-len(shape), epsilon=self.spec.eps)
        axes = list(range(-len(shape), 0))
        d = graph.node("Sub", [x, graph.node("ReduceMean", [x], axes=axes, keepdims=1)])
        var = graph.node("ReduceMean", [graph.node("Mul", [d, d])], axes=axes, keepdims=1)
        std = graph.node("Sqrt", [graph.node("Add", [var, graph.constant(self.spec.eps, "eps")])])
        return graph.node("Add", [graph.node("Mul", [graph.node("Div", [d, std]), gamma]), beta])


class NormTraining(LayerTraining):
    """The training half: the batch's statistics (mean, var), kept for the backward pass; with
    BatchNorm(sync=True) on several ranks, those of the whole step's batch (`_sync_statistics`,
    `_sync_sums`: host copies summed over the ranks, so it runs live, not replayed)."""

    replayable = True

    def __init__(self, layer: NormLayer, link: Link):
        super().__init__(layer, link)
        queue, dtype = layer.ctx.queue, layer.dtype
        self.segments = layer.spec.segments(layer.input_shape, self.batch)
        outer, count, inner = self.segments
        self.synced = layer.batch_norm and layer.spec.sync
        self.replayable = not self.synced
        self.sync = None  # the ranks of the step being run (Step.sync)
        if layer.batch_norm and outer * inner < 2:  # synced too: a rank's part of one value is refused
            raise ValueError(f"BatchNorm needs more than one value per channel to train, got batches of {self.batch} "
                             f"samples of shape {layer.input_shape}: choose a batch_size that leaves no batch of one")
        self.out, self.delta = layer.empty(self.batch), layer.empty(self.batch)
        # the activation runs apart, after z (the values before it), in the output layer (the costs
        # from logits read z) and on rows shorter than a vector, where the fused kernels ran scalar
        # code per element (2x2 images: 1.13x the time of a separate Activation layer)
        apart = self.is_output or self.segments[2] < vector_width(dtype)
        self.z = layer.empty(self.batch) if apart and layer.activation != "linear" else None
        self.mean, self.var = cla.empty(queue, count, dtype), cla.empty(queue, count, dtype)
        self.s1, self.s2 = cla.empty(queue, count, dtype), cla.empty(queue, count, dtype)
        self.zeros = norm.zeros(layer.ctx, count, dtype) if layer.batch_norm else None
        self._train = True

    def forward(self, step: Step) -> None:
        layer, ctx = self.layer, self.ctx
        self._train = step.train or not layer.batch_norm
        if not self._train:  # inference behaviour: the running statistics
            self._normalize(None)
            return
        norm.moments(ctx, self.x, self.mean, self.var, self.segments)
        outer, _, inner = self.segments
        values = outer * inner  # per channel: this rank's, or (synced) the whole batch's
        self.sync = step.sync if self.synced and step.sync is not None and step.sync.size > 1 else None
        if self.sync is not None:
            values = self._sync_statistics(values)
        if layer.batch_norm:
            norm.running_update(ctx, self.mean, self.var, self.arrays["running_mean"], self.arrays["running_var"],
                                layer.spec.momentum, values)
        self._normalize((self.mean, self.var))

    def _normalize(self, stats: tuple | None) -> None:
        """out = f(x normalized), through z when the layer keeps it."""
        layer = self.layer
        if self.z is None:
            layer.forward(self.x, self.out, stats)
            return
        layer.forward(self.x, self.z, stats, activate=False)
        activations.forward(self.ctx, layer.activation, self.z, self.out, layer.alpha)

    @property
    def logits(self) -> cla.Array:
        return self.out if self.z is None else self.z

    def _sync_statistics(self, values: int) -> int:
        """Replace this rank's mean and var by the whole batch's: every rank's (count, mean, var)
        gathered (as a sum of rows that only their rank fills) and combined in rank order by
        Chan's formula, as the kernels combine rows. Returns the whole batch's values per channel."""
        sync, channels = self.sync, self.mean.size
        parts = np.zeros((sync.size, 3, channels))
        parts[sync.rank, 0], parts[sync.rank, 1], parts[sync.rank, 2] = values, self.mean.get(), self.var.get()
        sync.total(parts.reshape(-1))
        counts, means, variances = parts[:, 0, :], parts[:, 1, :], parts[:, 2, :]
        total = counts.sum(axis=0)
        if (total < 2).any():
            raise ValueError(f"BatchNorm needs more than one value per channel to train, got {int(total.min())} in "
                             "a step over every rank: choose a larger batch_size")
        mean = (counts * means).sum(axis=0) / total
        m2 = (counts * variances).sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)
        self.mean.set(mean.astype(self.mean.dtype))
        self.var.set((m2 / total).astype(self.var.dtype))
        return int(total[0])

    def _sync_sums(self, s1: cla.Array, s2: cla.Array) -> tuple[cla.Array, cla.Array]:
        """The whole batch's sums of dy and dy * xhat in this rank's scale, for its input gradient.
        Each rank's dy is of its own mean cost, which fit weighs by rows / global_rows when it adds
        the ranks' gradients: the sums are added with those weights, and divided by this rank's."""
        sync = self.sync
        weight = sync.rows / sync.global_rows
        both = np.concatenate([s1.get(), s2.get()]).astype(np.float64) * weight
        sync.total(both)
        both /= weight
        self.s1.set(both[:s1.size].astype(s1.dtype))
        self.s2.set(both[s1.size:].astype(s2.dtype))
        return self.s1, self.s2

    def backward(self, skip_activation_derivative: bool = False) -> None:
        """skip_activation_derivative: delta is dC/dz already (the output layer's, from a cost)."""
        if self.layer.batch_norm:
            self._batch_norm_backward(skip_activation_derivative)
        else:
            self._layer_norm_backward()

    def _batch_norm_backward(self, skip_activation_derivative: bool) -> None:
        layer, ctx, eps = self.layer, self.ctx, self.layer.spec.eps
        mean, var = (self.mean, self.var) if self._train else (self.arrays["running_mean"], self.arrays["running_var"])
        s1, s2 = self.gradients.get("shift", self.s1), self.gradients.get("scale", self.s2)  # dbeta, dgamma
        if self.z is None:
            fused = norm.Fused(layer.activation, layer.alpha, self.out, self.arrays.get("shift"))
        else:  # the activation ran apart: delta becomes dC/dz in place (unless the cost gave that)
            fused = norm.Fused()
            if not skip_activation_derivative:
                saved = self.z if activations.reads(layer.activation) == "z" else self.out
                activations.backward(ctx, layer.activation, saved, self.delta, layer.alpha)
        # dbeta and dgamma of this rank's part: fit adds the ranks' parameter gradients itself
        norm.sums(ctx, self.delta, self.x, mean, var, self.arrays.get("scale"), eps, s1, s2, self.segments,
                  fused=fused)
        if self.grad_x is not None:
            cols, segments, stats_at, affine_at = layer.layout(self.batch)
            outer, _, inner = self.segments
            values = outer * inner
            # with running statistics, mean and var are constants: dx = scale * invstd * dy
            sums = (s1, s2) if self._train else (self.zeros, self.zeros)
            if self.sync is not None and self._train:
                sums, values = self._sync_sums(s1, s2), inner * self.sync.global_rows  # the whole batch's
            norm.normalize_backward(ctx, self.delta, self.x, mean, var, self.arrays.get("scale"), *sums, eps,
                                    values, self.grad_x, cols, segments, stats_at, affine_at, fused=fused)

    def _layer_norm_backward(self) -> None:
        layer, ctx, eps = self.layer, self.ctx, self.layer.spec.eps
        _, rows, features = self.segments
        scale = self.arrays.get("scale")
        if "scale" in self.gradients:  # dgamma and dbeta (not when frozen): sums over the rows
            norm.column_sums(ctx, self.delta, self.x, self.mean, self.var, eps, self.gradients["shift"].reshape(
                features), self.gradients["scale"].reshape(features), features)
        if self.grad_x is not None:
            norm.sums(ctx, self.delta, self.x, self.mean, self.var, scale, eps, self.s1, self.s2, self.segments,
                      weighted=scale is not None)
            cols, segments, stats_at, affine_at = layer.layout(self.batch)
            norm.normalize_backward(ctx, self.delta, self.x, self.mean, self.var, scale, self.s1, self.s2, eps,
                                    features, self.grad_x, cols, segments, stats_at, affine_at,
                                    weighted=scale is not None)

    def release(self) -> None:
        super().release()
        self.mean = self.var = self.s1 = self.s2 = self.zeros = self.z = None


for _layer in (BatchNorm, LayerNorm):
    register_layer(_layer)
