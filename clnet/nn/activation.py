"""An activation as a layer of its own: after any layer, or a second one in a row.

    Activation("gelu")               out = f(x), elementwise on samples of any shape
    Activation(("leaky_relu", 0.2))  a parametrized one (clnet.ACTIVATIONS)
    Activation("softmax")            over the features of (batch, features) data (log_softmax too)

Its backward pass turns dC/d(out) into dC/dx in place, in the previous layer's gradient buffer.
"""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

from ..ops import activations
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Step, in_place_delta
from .registry import register_layer


class Activation(Layer):
    """out = f(x) for an activation f (a name, or (name, alpha) for leaky_relu and elu)."""

    def __init__(self, activation: str | tuple[str, float]):
        self.activation, self.alpha = activations.parse(activation)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.activation in activations.ROWWISE and len(input_shape) != 1:
            raise ValueError(f"{self.activation} works on (batch, features) data, got samples of shape {input_shape}")
        return tuple(input_shape)

    def config(self) -> dict:
        return {"activation": activations.describe(self.activation, self.alpha)}

    def build(self, ctx, input_shape, dtype, arrays) -> ActivationLayer:
        return ActivationLayer(self, ctx, input_shape, dtype, arrays)

    def __repr__(self) -> str:
        return f"Activation({activations.describe(self.activation, self.alpha)!r})"


class ActivationLayer(BuiltLayer):
    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        out = self.empty(x.shape[0]) if out is None else out
        return activations.forward(self.ctx, self.activation, x, out, self.alpha)

    def training(self, link: Link) -> ActivationTraining:
        return ActivationTraining(self, link)

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        return graph.activation(self.activation, self.alpha, x)


class ActivationTraining(LayerTraining):
    replayable = True

    def __init__(self, layer: ActivationLayer, link: Link):
        super().__init__(layer, link)
        self.out = layer.empty(self.batch)
        self.delta = in_place_delta(self, self.out.shape)

    @property
    def logits(self) -> cla.Array:
        return self.x

    def forward(self, step: Step) -> None:
        self.layer.forward(self.x, self.out)

    def backward(self, skip_activation_derivative: bool = False) -> None:
        """delta *= f'(x) in place, which makes it the previous layer's dC/d(out); nothing when
        no layer before needs it, or when delta is dC/dx already (skip_activation_derivative)."""
        if self.grad_x is None or skip_activation_derivative:
            return
        layer = self.layer
        saved = self.x if activations.reads(layer.activation) == "z" else self.out
        activations.backward(self.ctx, layer.activation, saved, self.delta, layer.alpha)


register_layer(Activation)
