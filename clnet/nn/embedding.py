"""Token inputs: an embedding table that turns integer ids into vectors (PyTorch's nn.Embedding),
and a learned positional embedding added to a sequence of them (GPT's).

A network whose first layer is an Embedding takes (batch, seq) integer ids: the network checks
them (integers, within the vocabulary) before they reach the device, and holds them as its reals
there (exact up to 2^24 in float32), so batches, shuffling and MPI move them as any input.
"""

from __future__ import annotations

import numbers

import numpy as np
import pyopencl.array as cla

from ..ops import bias, embedding, memory
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Parameter, Step, in_place_delta
from .registry import register_layer


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)


class Embedding(Layer):
    """A table of `vocab` vectors of `dim` features, row v for id v (PyTorch's nn.Embedding, its
    `weight` drawn from N(0, 1) whatever the network's init method). Only as a network's first
    layer: samples of ids of any shape (seq,) give (seq, dim)."""

    def __init__(self, vocab: int, dim: int):
        self.vocab, self.dim = _whole("vocab", vocab), _whole("dim", dim)

    @property
    def takes_ids(self) -> int:
        """The vocabulary size: the network's input holds ids below it."""
        return self.vocab

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*input_shape, self.dim)

    def parameters(self, input_shape: tuple[int, ...]) -> list[Parameter]:
        return [Parameter("weight", (self.vocab, self.dim), "normal", fan_in=1, fan_out=self.dim)]

    def build(self, ctx, input_shape, dtype, arrays) -> EmbeddingLayer:
        limit = embedding.MAX_ID[np.dtype(dtype).name]
        if self.vocab > limit:
            raise ValueError(f"Embedding({self.vocab}, ...): a {np.dtype(dtype).name} network holds ids exactly up "
                             f"to {limit:,}; use float64 for a larger vocabulary")
        return EmbeddingLayer(self, ctx, input_shape, dtype, arrays)

    def brief(self) -> str:
        return f"embedding {self.vocab} x {self.dim}"


class EmbeddingLayer(BuiltLayer):
    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        """out = the table's rows of the ids x (batch, *input_shape). Queued."""
        out = self.empty(x.shape[0]) if out is None else out
        embedding.gather(self.ctx, x, self.arrays["weight"], out)
        return out

    def training(self, link: Link) -> EmbeddingTraining:
        return EmbeddingTraining(self, link)

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        """A Gather of the table's rows by the ids (the model's int64 input: an Embedding is first)."""
        return graph.node("Gather", [graph.constant(arrays["weight"], "embedding"), x], axis=0)


class EmbeddingTraining(LayerTraining):
    """The training half: the table's gradient sums delta by id; ids have no gradient."""

    replayable = True

    def __init__(self, layer: EmbeddingLayer, link: Link):
        super().__init__(layer, link)
        self.out, self.delta = layer.empty(self.batch), layer.empty(self.batch)

    def forward(self, step: Step) -> None:
        self.layer.forward(self.x, self.out)

    def backward(self) -> None:
        if "weight" in self.gradients:
            embedding.scatter(self.ctx, self.x, self.delta, self.gradients["weight"])


class PositionalEmbedding(Layer):
    """A learned vector per position added to a sequence (GPT-2's): out[t] = x[t] + weight[t] for
    (seq, features) samples, `weight` (seq, features) drawn from N(0, 1) like an Embedding's."""

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 2:
            raise ValueError(f"PositionalEmbedding takes (batch, seq, features) inputs, got samples of shape "
                             f"{input_shape}")
        return tuple(input_shape)

    def parameters(self, input_shape: tuple[int, ...]) -> list[Parameter]:
        return [Parameter("weight", tuple(input_shape), "normal", fan_in=1, fan_out=input_shape[1])]

    def build(self, ctx, input_shape, dtype, arrays) -> PositionalLayer:
        return PositionalLayer(self, ctx, input_shape, dtype, arrays)

    def brief(self) -> str:
        return "positional embedding"

    def __repr__(self) -> str:
        return "PositionalEmbedding()"


class PositionalLayer(BuiltLayer):
    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        """out = x + weight, the weight broadcast over the batch. Queued."""
        out = self.empty(x.shape[0]) if out is None else out
        flat = out.reshape(x.shape[0], -1)
        if out is not x:
            memory.copy(self.ctx, x, out)
        bias.add_bias(self.ctx, flat, self.arrays["weight"].reshape(-1))
        return out

    def training(self, link: Link) -> PositionalTraining:
        return PositionalTraining(self, link)

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        return graph.node("Add", [x, graph.constant(arrays["weight"], "positions")])


class PositionalTraining(LayerTraining):
    """The training half: dC/dx is delta itself (written in place); the weight's gradient is
    delta summed over the batch."""

    replayable = True

    def __init__(self, layer: PositionalLayer, link: Link):
        super().__init__(layer, link)
        self.out = layer.empty(self.batch)
        self.delta = in_place_delta(self, self.out.shape)
        if self.delta is None:  # nothing before it needs dC/dx, but the weight's gradient reads delta
            self.delta = layer.empty(self.batch)

    def forward(self, step: Step) -> None:
        self.layer.forward(self.x, self.out)

    def backward(self) -> None:
        if "weight" in self.gradients:
            bias.bias_gradient(self.ctx, self.delta.reshape(self.batch, -1), self.gradients["weight"].reshape(-1))


for _layer in (Embedding, PositionalEmbedding):
    register_layer(_layer)
