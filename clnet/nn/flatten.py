"""Flatten: (batch, *shape) -> (batch, prod(shape)), as a view (no copy, no launch), between
convolutional layers and fully-connected ones."""

from __future__ import annotations

import math

import numpy as np
import pyopencl.array as cla

from ..ops import memory
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Step, in_place_delta
from .registry import register_layer


class Flatten(Layer):
    """Each sample as one row of features, in C order (PyTorch's nn.Flatten())."""

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(input_shape),)

    def training_bytes(self, batch, input_shape, itemsize, is_output) -> dict[str, int]:
        return {}  # views of its neighbours' buffers

    def build(self, ctx, input_shape, dtype, arrays) -> FlattenLayer:
        return FlattenLayer(self, ctx, input_shape, dtype, arrays)

    def __repr__(self) -> str:
        return "Flatten()"


class FlattenLayer(BuiltLayer):
    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        flat = x.reshape(x.shape[0], *self.output_shape)
        if out is None:
            return flat
        memory.copy(self.ctx, flat, out)
        return out

    def training(self, link: Link) -> FlattenTraining:
        return FlattenTraining(self, link)

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        return graph.node("Flatten", [x], axis=1)


class FlattenTraining(LayerTraining):
    replayable = True

    def __init__(self, layer: FlattenLayer, link: Link):
        super().__init__(layer, link)
        shape = (self.batch, *layer.output_shape)
        self.out = self.x.reshape(shape)
        self.delta = in_place_delta(self, shape)

    def forward(self, step: Step) -> None:
        pass  # out is a view of x

    def backward(self) -> None:
        pass  # delta is a view of grad_x


register_layer(Flatten)
