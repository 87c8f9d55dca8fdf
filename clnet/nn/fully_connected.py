"""Fully-connected layers: a = f(x @ W.T + b) (PyTorch's Linear convention), W of shape
(outputs, inputs), row-major, with the activation (and dropout) fused into the layer. On
(seq, features) samples the layer acts on the last axis, every position alike (as PyTorch's).

    FullyConnected(outputs, activation)      the blueprint users write
    FullyConnectedLayer                      the inference half: weights, bias, forward pass
    FullyConnectedTraining                   the training half for one batch size
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pyopencl.array as cla

from ..ops import activations, blas, dense, memory
from ..ops import dropout as dropout_op
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Parameter, Step
from .registry import register_layer


class FullyConnected(Layer):
    """A fully-connected layer of `outputs` units with an activation (clnet.ACTIVATIONS; a name,
    or (name, alpha) for leaky_relu and elu, e.g. ("leaky_relu", 0.2)).

    dropout: the probability that training drops each of the layer's outputs (inverted dropout:
    the kept ones are scaled by 1 / (1 - dropout)); inference never drops anything."""

    def __init__(self, outputs: int, activation: str | tuple[str, float] = "linear", dropout: float = 0.0):
        if isinstance(outputs, bool) or not isinstance(outputs, numbers.Integral) or outputs < 1:
            raise ValueError(f"a layer needs a positive whole number of outputs, got {outputs!r}")
        self.outputs = int(outputs)
        self.activation, self.alpha = activations.parse(activation)
        self.dropout = dropout_op.check_rate(dropout)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) > 2:
            raise ValueError(f"FullyConnected takes (batch, features) or (batch, seq, features) inputs, got samples "
                             f"of shape {input_shape}: put clnet.Flatten() before it")
        return (*input_shape[:-1], self.outputs)

    def parameters(self, input_shape: tuple[int, ...]) -> list[Parameter]:
        inputs = input_shape[-1]
        return [Parameter("weights", (self.outputs, inputs), "weight", fan_in=inputs, fan_out=self.outputs),
                Parameter("bias", (self.outputs,), "bias")]

    def build(self, ctx, input_shape, dtype, arrays) -> FullyConnectedLayer:
        return FullyConnectedLayer(self, ctx, input_shape, dtype, arrays)

    def keeps_z(self, is_output: bool) -> bool:
        """Whether training keeps x @ W.T + b apart from f of it: for the cost's exact value at the
        output, and for the derivatives computed from z (gelu, silu)."""
        return is_output or activations.reads(self.activation) == "z"

    def training_bytes(self, batch, input_shape, itemsize, is_output) -> dict[str, int]:
        rows = batch * math.prod(input_shape[:-1])
        size = rows * self.outputs * itemsize
        kinds = ["outputs", "deltas"] + ["logits"] * self.keeps_z(is_output) + ["outputs after dropout"] * bool(
            self.dropout)
        return {f"{kind} ({rows} x {self.outputs})": size for kind in kinds}

    def config(self) -> dict:
        return {"outputs": self.outputs, "activation": activations.describe(self.activation, self.alpha),
                "dropout": self.dropout}

    def brief(self) -> str:
        return f"{self.outputs} {activations.describe(self.activation, self.alpha)}"

    def __repr__(self) -> str:
        rate = f", dropout={self.dropout}" if self.dropout else ""
        return f"FullyConnected({self.outputs}, {activations.describe(self.activation, self.alpha)!r}{rate})"


class FullyConnectedLayer(BuiltLayer):
    """The inference half: weights (outputs, inputs) and bias (outputs,) on the device."""

    @property
    def inputs(self) -> int:
        return self.input_shape[-1]

    @property
    def outputs(self) -> int:
        return self.spec.outputs

    @property
    def weights(self) -> cla.Array:
        """Device array (outputs, inputs), row-major: W in a = f(x @ W.T + b)."""
        return self.arrays["weights"]

    @property
    def bias(self) -> cla.Array:
        """Device array (outputs,): b in a = f(x @ W.T + b)."""
        return self.arrays["bias"]

    def forward(self, x: cla.Array, out: cla.Array | None = None, z: cla.Array | None = None) -> cla.Array:
        """out = f(x @ W.T + b) for a (batch, inputs) x into a (batch, outputs) out, or (batch,
        seq, inputs) into (batch, seq, outputs). Queued.

        z: where to keep x @ W.T + b (the logits); without it, out holds them on the way."""
        out = self.empty(x.shape[0]) if out is None else out
        rows = x.size // self.inputs
        dense.forward(self.ctx, x.reshape(rows, self.inputs), self.weights, self.bias, self.activation,
                      out.reshape(rows, self.outputs), None if z is None else z.reshape(rows, self.outputs), self.alpha)
        return out

    def training(self, link: Link) -> FullyConnectedTraining:
        return FullyConnectedTraining(self, link)

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        """A Gemm node (transB=1), or MatMul and Add on sequences, and the activation's nodes."""
        if len(self.input_shape) > 1:
            product = graph.node("MatMul", [x, graph.constant(np.ascontiguousarray(arrays["weights"].T), "W")])
            z = graph.node("Add", [product, graph.constant(arrays["bias"], "b")])
            return graph.activation(self.activation, self.alpha, z)
        z = graph.node("Gemm", [x, graph.constant(arrays["weights"], "W"), graph.constant(arrays["bias"], "b")],
                       transB=1)
        return graph.activation(self.activation, self.alpha, z)

    def __repr__(self) -> str:
        return f"FullyConnectedLayer({self.inputs} -> {self.outputs}, {self.activation!r}, {self.dtype.name})"


class FullyConnectedTraining(LayerTraining):
    """The training half for a fixed batch: a = f(z) (z kept apart at the output and for
    derivatives that read it), `out` = a with the step's dropout mask applied (a itself without
    dropout), `delta` = dC/d(out), then dC/dz in place."""

    def __init__(self, layer: FullyConnectedLayer, link: Link):
        super().__init__(layer, link)
        queue, shape = layer.ctx.queue, (self.batch, *layer.output_shape)
        self.rows = self.batch * math.prod(layer.output_shape[:-1])  # positions of every sample
        self.replayable = not layer.dropout  # the masks change every step
        self.a = cla.empty(queue, shape, layer.dtype)  # f(z); z itself too unless kept apart
        self.z = cla.empty(queue, shape, layer.dtype) if layer.spec.keeps_z(self.is_output) else None
        self.out = cla.empty(queue, shape, layer.dtype) if layer.dropout else self.a
        self.delta = cla.empty(queue, shape, layer.dtype)
        # none when the layer is frozen: its backward pass only passes dC/dx on
        self.grad_weights, self.grad_bias = self.gradients.get("weights"), self.gradients.get("bias")
        self._mask: tuple[int, int, int] | None = None  # (key, step, first element) of the last forward's dropout

    @property
    def logits(self) -> cla.Array:
        return self.a if self.z is None else self.z

    def forward(self, step: Step) -> None:
        layer = self.layer
        layer.forward(self.x, self.a, self.z)
        if layer.dropout:
            self._mask = (step.key, step.number, step.row_offset * self.out.size // self.batch) if step.train \
                else None
            if step.train:
                dropout_op.apply(self.ctx, self.a, self.out, layer.dropout, step.key, self.index, step.number,
                                 self._mask[2])
            else:
                memory.copy(self.ctx, self.a, self.out)

    def backward(self, skip_activation_derivative: bool = False) -> None:
        """skip_activation_derivative: delta is dC/dz already (the cross-entropy costs give it)."""
        ctx, layer = self.ctx, self.layer
        if self._mask is not None:  # the same mask again: dC/da = dC/d(out) * mask / (1 - rate)
            key, step, first = self._mask
            dropout_op.apply(ctx, self.delta, self.delta, layer.dropout, key, self.index, step, first)
        rows, outputs, inputs = self.rows, layer.outputs, layer.inputs
        saved = (self.z if activations.reads(layer.activation) == "z" else self.a).reshape(rows, outputs)
        activation = None if skip_activation_derivative else layer.activation
        delta = self.delta.reshape(rows, outputs)
        if self.grad_bias is not None:
            dense.backward_bias(ctx, activation, saved, delta, self.grad_bias, layer.alpha)
            blas.gemm(ctx, delta, self.x.reshape(rows, inputs), self.grad_weights, trans_a=True)
        elif activation not in (None, "linear"):
            activations.backward(ctx, activation, saved, delta, layer.alpha)
        if self.grad_x is not None:
            blas.gemm(ctx, delta, layer.weights, self.grad_x.reshape(rows, inputs))

    def release(self) -> None:
        super().release()
        self.a = self.z = self.grad_weights = self.grad_bias = None


register_layer(FullyConnected)
