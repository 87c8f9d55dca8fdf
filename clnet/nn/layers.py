"""Fully-connected layers: a shape-only blueprint, and its inference and training halves.

    FullyConnected(outputs, activation)      what the user writes: no device, no memory
    FullyConnectedLayer                      built by a network: weights, bias, forward pass
    FullyConnectedTraining                   made by a training network for one batch size:
                                             every work buffer, allocated once

The layer computes a = f(x @ W.T + b) (PyTorch's Linear convention), W of shape
(outputs, inputs), row-major. Its weights and bias are views into its network's one
parameter buffer, and its gradients views into the network's one gradient buffer.
"""

from __future__ import annotations

import numbers

import numpy as np
import pyopencl.array as cla

from ..ops import activations, blas, dense, memory
from ..ops import dropout as dropout_op
from ..runtime.errors import ContextClosedError


class FullyConnected:
    """A fully-connected layer of `outputs` units with an activation (see ACTIVATIONS).

    dropout: the probability that training drops each of the layer's outputs (inverted dropout:
    the kept ones are scaled by 1 / (1 - dropout)); inference never drops anything."""

    def __init__(self, outputs: int, activation: str = "linear", dropout: float = 0.0):
        if isinstance(outputs, bool) or not isinstance(outputs, numbers.Integral) or outputs < 1:
            raise ValueError(f"a layer needs a positive whole number of outputs, got {outputs!r}")
        self.outputs = int(outputs)
        self.activation = activations.check_activation(activation)
        self.dropout = dropout_op.check_rate(dropout)

    def parameter_shapes(self, inputs: int) -> list[tuple[int, ...]]:
        """The shapes of the weights and the bias for `inputs` inputs."""
        return [(self.outputs, inputs), (self.outputs,)]

    def build(self, ctx, inputs: int, dtype: np.dtype, weights: cla.Array, bias: cla.Array) -> FullyConnectedLayer:
        """The inference layer on the given parameter arrays (views of its network's buffer)."""
        return FullyConnectedLayer(ctx, inputs, self.outputs, self.activation, dtype, weights, bias, self.dropout)

    def __repr__(self) -> str:
        rate = f", dropout={self.dropout}" if self.dropout else ""
        return f"FullyConnected({self.outputs}, {self.activation!r}{rate})"


class FullyConnectedLayer:
    """The inference half: weights (outputs, inputs) and bias (outputs,) on the device."""

    def __init__(self, ctx, inputs: int, outputs: int, activation: str, dtype: np.dtype, weights: cla.Array,
                 bias: cla.Array, dropout: float = 0.0):
        self.ctx, self.inputs, self.outputs, self.activation, self.dtype = ctx, inputs, outputs, activation, dtype
        self.dropout = dropout
        self._weights: cla.Array | None = weights
        self._bias: cla.Array | None = bias

    @property
    def weights(self) -> cla.Array:
        """Device array (outputs, inputs), row-major: W in a = f(x @ W.T + b)."""
        if self._weights is None:
            raise ContextClosedError("this layer's context is closed; its weights were released")
        return self._weights

    @property
    def bias(self) -> cla.Array:
        """Device array (outputs,): b in a = f(x @ W.T + b)."""
        if self._bias is None:
            raise ContextClosedError("this layer's context is closed; its bias was released")
        return self._bias

    def parameters(self) -> list[cla.Array]:
        return [self.weights, self.bias]

    def forward(self, x: cla.Array, out: cla.Array, z: cla.Array | None = None) -> cla.Array:
        """out = f(x @ W.T + b) for a (batch, inputs) x and a (batch, outputs) out. Queued.

        z: where to keep x @ W.T + b (the logits); without it, out holds them on the way."""
        return dense.forward(self.ctx, x, self.weights, self.bias, self.activation, out, z)

    def release(self) -> None:
        self._weights = self._bias = None

    def __repr__(self) -> str:
        return f"FullyConnectedLayer({self.inputs} -> {self.outputs}, {self.activation!r}, {self.dtype.name})"


class FullyConnectedTraining:
    """The training half of a layer for a fixed batch: its output and gradient buffers.

    `x` is the layer's input (the batch or the previous layer's output); `grad_x`, where the
    layer writes dC/dx, is the previous layer's `delta` (None for the first layer, which skips
    that product). keep_z keeps x @ W.T + b apart from f of it (the output layer does, for the
    cost's value). grad_weights and grad_bias are views of the network's gradient buffer.
    With dropout, `out` (what the next layer reads) is `a` with the step's mask applied, and
    `a` keeps f(z) for the activation's derivative; without, `out` is `a`. `index` numbers the
    layer in the dropout mask's counter.
    """

    def __init__(self, layer: FullyConnectedLayer, batch: int, x: cla.Array, grad_x: cla.Array | None,
                 grad_weights: cla.Array, grad_bias: cla.Array, keep_z: bool = False, index: int = 0):
        queue, shape = layer.ctx.queue, (batch, layer.outputs)
        self.layer, self.x, self.grad_x, self.index = layer, x, grad_x, index
        self.a = cla.empty(queue, shape, layer.dtype)  # f(z); z itself too unless keep_z
        self.z = cla.empty(queue, shape, layer.dtype) if keep_z else None  # for exact cost values
        self.out = cla.empty(queue, shape, layer.dtype) if layer.dropout else self.a
        self.delta = cla.empty(queue, shape, layer.dtype)  # dC/d(out), then dC/dz in place
        self.grad_weights, self.grad_bias = grad_weights, grad_bias
        self._mask: tuple[int, int] | None = None  # (key, step) of the last forward's dropout

    def forward(self, key: int = 0, step: int = 0, drop: bool = True) -> cla.Array:
        """out = the layer's output for x, with this step's dropout when `drop`. Queued."""
        ctx, layer = self.layer.ctx, self.layer
        layer.forward(self.x, self.a, self.z)
        if layer.dropout:
            self._mask = (key, step) if drop else None
            if drop:
                dropout_op.apply(ctx, self.a, self.out, layer.dropout, key, self.index, step)
            else:
                memory.copy(ctx, self.a, self.out)
        return self.out

    def backward(self, skip_activation_derivative: bool = False) -> None:
        """From dC/d(out) in `delta`: dC/dW, dC/db, and dC/dx into `grad_x`. Queued."""
        ctx, layer = self.layer.ctx, self.layer
        if self._mask is not None:  # the same mask again: dC/da = dC/d(out) * mask / (1 - rate)
            key, step = self._mask
            dropout_op.apply(ctx, self.delta, self.delta, layer.dropout, key, self.index, step)
        dense.backward_bias(ctx, None if skip_activation_derivative else layer.activation, self.a, self.delta,
                            self.grad_bias)
        blas.gemm(ctx, self.delta, self.x, self.grad_weights, trans_a=True)
        if self.grad_x is not None:
            blas.gemm(ctx, self.delta, layer.weights, self.grad_x)

    def release(self) -> None:
        self.x = self.grad_x = self.a = self.z = self.out = self.delta = self.grad_weights = self.grad_bias = None
