"""1-D convolution layers, PyTorch's nn.Conv1d over (channels, length) samples with the
activation fused: a = f(conv(x, W) + b), W of shape (out_channels, in_channels / groups, k).

It is a Conv2d of a (1, k) kernel over samples of height 1, and runs on the 2-D convolution's
kernels: its arrays are viewed with that height of 1 (the same memory), so nothing is copied.
"""

from __future__ import annotations

import dataclasses
import numbers

import pyopencl.array as cla

from ..ops import activations, conv
from .conv2d import Conv2d, Conv2dLayer, Conv2dTraining
from .protocol import Link
from .registry import register_layer


def _one(name: str, value, low: int) -> int:
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def with_height(a: cla.Array | None) -> cla.Array | None:
    """(..., length) as (..., 1, length): a view."""
    return None if a is None else a.reshape(*a.shape[:-1], 1, a.shape[-1])


class Conv1d(Conv2d):
    """A convolution of `out_channels` filters of kernel_size over (channels, length) samples, with
    PyTorch's stride, padding (a whole number, or "same" for stride 1), dilation, groups and bias,
    and an activation (clnet.ACTIVATIONS, not softmax) applied in the same pass."""

    def __init__(self, out_channels: int, kernel_size: int, stride: int = 1, padding: int | str = 0,
                 dilation: int = 1, groups: int = 1, bias: bool = True, activation: str | tuple[str, float] = "linear"):
        pad = padding if padding in ("same", "valid") else (0, _one("padding", padding, 0))
        super().__init__(out_channels, (1, _one("kernel_size", kernel_size, 1)), (1, _one("stride", stride, 1)), pad,
                         (1, _one("dilation", dilation, 1)), groups, bias, activation)

    def geometry(self, input_shape: tuple[int, ...]) -> conv.Geometry:
        if len(input_shape) != 2:
            raise ValueError(f"Conv1d takes (batch, channels, length) inputs, got samples of shape {input_shape}")
        return super().geometry((input_shape[0], 1, input_shape[1]))

    def output_shape(self, input_shape):
        return self.out_channels, self.geometry(input_shape).out_w

    def parameters(self, input_shape):
        found = super().parameters(input_shape)  # self.geometry reads the (channels, length) shape
        weights = found[0]  # (out, in / groups, 1, k) as (out, in / groups, k)
        return [dataclasses.replace(weights, shape=weights.shape[:2] + weights.shape[3:])] + found[1:]

    def build(self, ctx, input_shape, dtype, arrays) -> Conv1dLayer:
        return Conv1dLayer(self, ctx, input_shape, dtype, arrays)

    def config(self) -> dict:
        padding = self.padding if self.padding == "same" else self.padding[1]
        return {"out_channels": self.out_channels, "kernel_size": self.kernel_size[1], "stride": self.stride[1],
                "padding": padding, "dilation": self.dilation[1], "groups": self.groups, "bias": self.bias,
                "activation": activations.describe(self.activation, self.alpha)}

    def brief(self) -> str:
        return f"conv1d {self.out_channels} {self.kernel_size[1]} {self.activation}"


class Conv1dLayer(Conv2dLayer):
    """The inference half: weights (out_channels, in_channels / groups, k), bias."""

    @property
    def weights(self) -> cla.Array:
        return with_height(self.arrays["weights"])

    def forward(self, x: cla.Array, out: cla.Array | None = None, z: cla.Array | None = None,
                workspace: tuple[cla.Array, cla.Array] | None = None) -> cla.Array:
        out = self.empty(x.shape[0]) if out is None else out
        super().forward(with_height(x), with_height(out), with_height(z), workspace)
        return out

    def training(self, link: Link) -> Conv1dTraining:
        return Conv1dTraining(self, link)

    def onnx_window(self) -> dict:
        """A 1-D Conv's: the width's of the 2-D window."""
        window = super().onnx_window()
        return {**{key: value[1:] for key, value in window.items() if key != "pads"},
                "pads": window["pads"][1::2]}


class Conv1dTraining(Conv2dTraining):
    """Conv2d's training half, its arrays viewed with a height of 1."""

    def views(self, a: cla.Array | None) -> cla.Array | None:
        return with_height(a)


register_layer(Conv1d)
