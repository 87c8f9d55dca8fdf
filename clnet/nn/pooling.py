"""Pooling layers over (channels, height, width) samples, PyTorch's: MaxPool2d, AvgPool2d
(count_include_pad=True by default; both with ceil_mode), AdaptiveAvgPool2d(output_size) and
GlobalAvgPool2d (AdaptiveAvgPool2d(1): (c, 1, 1) out). No parameters; the backward passes of
overlapping windows gather (clnet.ops.pool), so they need no zeroing."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

from ..ops import pool
from .conv2d import _pair
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Step
from .registry import register_layer


def _images(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{name} takes (batch, channels, height, width) inputs, got samples of shape {input_shape}")
    return input_shape


class _WindowPool(Layer):
    """What MaxPool2d and AvgPool2d share: the windows and their checks."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, ceil_mode: bool = False):
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
        self.ceil_mode = bool(ceil_mode)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding {self.padding} must be at most half the kernel size {self.kernel_size} "
                             "(as in PyTorch)")

    @property
    def window(self) -> pool.Window:
        return pool.Window(*self.kernel_size, *self.stride, *self.padding, self.ceil_mode)

    def output_shape(self, input_shape):
        channels, height, width = _images(type(self).__name__, input_shape)
        out_h, out_w = self.window.output(height, width)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"a {self.kernel_size} window does not fit a {height}x{width} image")
        return channels, out_h, out_w

    def config(self) -> dict:
        found = {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}
        return {**found, "ceil_mode": True} if self.ceil_mode else found  # older files have no ceil_mode

    def brief(self) -> str:
        return f"{type(self).__name__[:3].lower()} pool {self.kernel_size[0]}x{self.kernel_size[1]}"


class MaxPool2d(_WindowPool):
    """The max of each kernel_size window, every stride (default: kernel_size) pixels; ceil_mode:
    the output size rounded up (a last window that starts in the image counts), as PyTorch's."""

    def build(self, ctx, input_shape, dtype, arrays) -> PoolLayer:
        return PoolLayer(self, ctx, input_shape, dtype, arrays)


class AvgPool2d(_WindowPool):
    """The mean of each window; count_include_pad: the padding counts in the divisor (PyTorch's
    default), else only the image's pixels do."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, count_include_pad: bool = True, ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def config(self) -> dict:
        return {**super().config(), "count_include_pad": self.count_include_pad}

    def build(self, ctx, input_shape, dtype, arrays) -> PoolLayer:
        return PoolLayer(self, ctx, input_shape, dtype, arrays)


class AdaptiveAvgPool2d(Layer):
    """PyTorch's AdaptiveAvgPool2d(output_size): (channels, h, w) -> (channels, *output_size), each
    output the mean of a window floor(i h / n) .. ceil((i + 1) h / n) - 1 (alexnet's 6x6, vgg's 7x7)."""

    def __init__(self, output_size: int | tuple[int, int]):
        self.output_size = _pair("output_size", output_size, 1)

    def output_shape(self, input_shape):
        return (_images("AdaptiveAvgPool2d", input_shape)[0], *self.output_size)

    def config(self) -> dict:
        return {"output_size": list(self.output_size)}

    def build(self, ctx, input_shape, dtype, arrays) -> PoolLayer:
        return PoolLayer(self, ctx, input_shape, dtype, arrays)

    def brief(self) -> str:
        return f"adaptive avg pool {self.output_size[0]}x{self.output_size[1]}"


class GlobalAvgPool2d(Layer):
    """The mean of each channel's plane: (channels, height, width) -> (channels, 1, 1)."""

    def output_shape(self, input_shape):
        return _images("GlobalAvgPool2d", input_shape)[0], 1, 1

    def build(self, ctx, input_shape, dtype, arrays) -> PoolLayer:
        return PoolLayer(self, ctx, input_shape, dtype, arrays)

    def __repr__(self) -> str:
        return "GlobalAvgPool2d()"


class PoolLayer(BuiltLayer):
    """The inference half of every pooling layer."""

    def forward(self, x: cla.Array, out: cla.Array | None = None, where: cla.Array | None = None) -> cla.Array:
        out = self.empty(x.shape[0]) if out is None else out
        spec = self.spec
        if isinstance(spec, MaxPool2d):
            if where is None:
                where = cla.empty(self.ctx.queue, out.shape, np.uint32)
            pool.max_forward(self.ctx, x, out, where, spec.window)
        elif isinstance(spec, AvgPool2d):
            pool.avg_forward(self.ctx, x, out, spec.window, spec.count_include_pad)
        elif isinstance(spec, AdaptiveAvgPool2d):
            pool.adaptive_avg_forward(self.ctx, x, out)
        else:
            pool.global_avg_forward(self.ctx, x, out)
        return out

    def training(self, link: Link) -> PoolTraining:
        return PoolTraining(self, link)

    def to_onnx(self, graph, x: str, arrays) -> str:
        spec = self.spec
        if isinstance(spec, GlobalAvgPool2d) or (isinstance(spec, AdaptiveAvgPool2d) and spec.output_size == (1, 1)):
            return graph.node("GlobalAveragePool", [x])
        if isinstance(spec, AdaptiveAvgPool2d):  # ONNX has none: an AveragePool where the windows are even
            sizes = self.input_shape[1:]
            if any(n % m for n, m in zip(sizes, spec.output_size)):
                raise ValueError(f"{spec!r} on {sizes[0]}x{sizes[1]} images has no ONNX form (windows of unequal "
                                 "sizes; ONNX has no adaptive pooling)")
            kernel = [n // m for n, m in zip(sizes, spec.output_size)]
            return graph.node("AveragePool", [x], kernel_shape=kernel, strides=kernel)
        pads = [spec.padding[0], spec.padding[1], spec.padding[0], spec.padding[1]]
        attributes = {"kernel_shape": list(spec.kernel_size), "strides": list(spec.stride), "pads": pads}
        if spec.ceil_mode:
            attributes["ceil_mode"] = 1
        if isinstance(spec, AvgPool2d):
            attributes["count_include_pad"] = int(spec.count_include_pad)
            return graph.node("AveragePool", [x], **attributes)
        return graph.node("MaxPool", [x], **attributes)


class PoolTraining(LayerTraining):
    replayable = True

    def __init__(self, layer: PoolLayer, link: Link):
        super().__init__(layer, link)
        self.out = layer.empty(self.batch)
        self.delta = layer.empty(self.batch) if self.grad_x is not None or self.is_output else None
        maxima = isinstance(layer.spec, MaxPool2d)
        self.where = cla.empty(self.ctx.queue, self.out.shape, np.uint32) if maxima else None

    def forward(self, step: Step) -> None:
        self.layer.forward(self.x, self.out, self.where)

    def backward(self) -> None:
        if self.grad_x is None:
            return
        spec = self.layer.spec
        if isinstance(spec, MaxPool2d):
            pool.max_backward(self.ctx, self.delta, self.where, self.grad_x, spec.window)
        elif isinstance(spec, AvgPool2d):
            pool.avg_backward(self.ctx, self.delta, self.grad_x, spec.window, spec.count_include_pad)
        elif isinstance(spec, AdaptiveAvgPool2d):
            pool.adaptive_avg_backward(self.ctx, self.delta, self.grad_x)
        else:
            pool.global_avg_backward(self.ctx, self.delta, self.grad_x)

    def release(self) -> None:
        super().release()
        self.where = None


for _layer in (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d):
    register_layer(_layer)
