"""The mean over the positions of a sequence: (batch, seq, features) -> (batch, features), what a
transformer classifier pools its positions with (PyTorch's x.mean(dim=1), Keras'
GlobalAveragePooling1D)."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

from .protocol import BuiltLayer, Layer, LayerTraining, Link, Step
from .registry import register_layer

LOCAL = 8


class SequenceMean(Layer):
    """The mean over the positions of (seq, features) samples: (features,)."""

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 2:
            raise ValueError(f"SequenceMean takes (batch, seq, features) inputs, got samples of shape {input_shape}")
        return (input_shape[1],)

    def build(self, ctx, input_shape, dtype, arrays) -> SequenceMeanLayer:
        return SequenceMeanLayer(self, ctx, input_shape, dtype, arrays)

    def brief(self) -> str:
        return "mean over positions"

    def __repr__(self) -> str:
        return "SequenceMean()"


class SequenceMeanLayer(BuiltLayer):
    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        batch = x.shape[0]
        seq, features = self.input_shape
        out = self.empty(batch) if out is None else out
        kernel = self.ctx.kernel("sequence.cl", "sequence_mean", dtype=self.dtype)
        kernel(self.ctx.queue, (-(-features // LOCAL) * LOCAL, batch), (LOCAL, 1), x=x, out=out, batch=batch,
               seq=seq, features=features)
        return out

    def training(self, link: Link) -> SequenceMeanTraining:
        return SequenceMeanTraining(self, link)

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        if graph.opset >= 18:  # the axes became an input
            return graph.node("ReduceMean", [x, graph.constant([1], "axes", dtype=np.int64)], keepdims=0)
        return graph.node("ReduceMean", [x], axes=[1], keepdims=0)


class SequenceMeanTraining(LayerTraining):
    replayable = True

    def __init__(self, layer: SequenceMeanLayer, link: Link):
        super().__init__(layer, link)
        self.out, self.delta = layer.empty(self.batch), layer.empty(self.batch)

    def forward(self, step: Step) -> None:
        self.layer.forward(self.x, self.out)

    def backward(self) -> None:
        if self.grad_x is None:
            return
        seq, features = self.layer.input_shape
        rows = self.batch * seq
        kernel = self.ctx.kernel("sequence.cl", "sequence_mean_backward", dtype=self.layer.dtype)
        kernel(self.ctx.queue, (-(-features // LOCAL) * LOCAL, rows), (LOCAL, 1), delta=self.delta, dx=self.grad_x,
               rows=rows, seq=seq, features=features)


register_layer(SequenceMean)
