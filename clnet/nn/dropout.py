"""Dropout as a layer of its own: while training, each element of x is dropped with probability p
and the kept ones are scaled by 1 / (1 - p) (inverted dropout); inference passes x on.

The masks are the ones `FullyConnected(..., dropout=p)` draws (clnet.ops.dropout: Philox with
fit's seed, the step and the layer's position in the network), so they are never stored: the
backward pass draws the same mask again, and every device draws the same one.
"""

from __future__ import annotations

import pyopencl.array as cla

from ..ops import dropout as dropout_op
from ..ops import memory
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Step, in_place_delta
from .registry import register_layer


class Dropout(Layer):
    """Drops each element with probability p in [0, 1) while training (PyTorch's nn.Dropout(p))."""

    def __init__(self, p: float = 0.5):
        self.p = dropout_op.check_rate(p)

    @property
    def dropout(self) -> float:
        return self.p

    def build(self, ctx, input_shape, dtype, arrays) -> DropoutLayer:
        return DropoutLayer(self, ctx, input_shape, dtype, arrays)

    def __repr__(self) -> str:
        return f"Dropout({self.p})"


class DropoutLayer(BuiltLayer):
    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        """Inference: x itself (or a copy into out)."""
        if out is None:
            return x
        memory.copy(self.ctx, x, out)
        return out

    def training(self, link: Link) -> DropoutTraining:
        return DropoutTraining(self, link)

    def to_onnx(self, graph, x: str, arrays) -> str:
        return x  # inference: nothing to do


class DropoutTraining(LayerTraining):
    replayable = False  # the mask changes every step

    def __init__(self, layer: DropoutLayer, link: Link):
        super().__init__(layer, link)
        self.out = layer.empty(self.batch)
        self.delta = in_place_delta(self, self.out.shape)
        self._mask: tuple[int, int, int] | None = None  # (key, step, first element) of the last forward's mask

    def forward(self, step: Step) -> None:
        per_sample = self.out.size // self.batch
        self._mask = (step.key, step.number, step.row_offset * per_sample) if step.train else None
        if step.train:
            dropout_op.apply(self.ctx, self.x, self.out, self.layer.dropout, step.key, self.index, step.number,
                             self._mask[2])
        else:
            memory.copy(self.ctx, self.x, self.out)

    def backward(self) -> None:
        """delta *= mask / (1 - p) in place: the previous layer's dC/d(out)."""
        if self.grad_x is not None and self._mask is not None:
            key, step, first = self._mask
            dropout_op.apply(self.ctx, self.delta, self.delta, self.layer.dropout, key, self.index, step, first)


register_layer(Dropout)
