"""Pooling over (samples, channels, height, width) images (kernels/pool.cl): max and average
over windows, PyTorch's MaxPool2d and AvgPool2d (ceil_mode too), its AdaptiveAvgPool2d, and the
global average.
Every call is queued, not waited on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import memory
from .arrays import check_array

LOCAL = 8  # work-items per group: one image row each


@dataclass(frozen=True)
class Window:
    """Windows of kh x kw pixels every (sh, sw), the images padded by (ph, pw) on each side; ceil:
    PyTorch's ceil_mode (a last window that starts in the image or its left padding counts)."""

    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    ceil: bool = False

    def output(self, height: int, width: int) -> tuple[int, int]:
        return self._size(height, self.kh, self.sh, self.ph), self._size(width, self.kw, self.sw, self.pw)

    def _size(self, n: int, k: int, s: int, p: int) -> int:
        out = (n + 2 * p - k + (s - 1 if self.ceil else 0)) // s + 1
        return out - 1 if self.ceil and (out - 1) * s >= n + p else out

    @property
    def apart(self) -> bool:
        """Whether the windows never overlap (each pixel in at most one)."""
        return self.sh >= self.kh and self.sw >= self.kw

    def params(self, dtype) -> dict:
        """The template params: the window is compiled in."""
        return {"dtype": dtype, "kh": self.kh, "kw": self.kw, "sh": self.sh, "sw": self.sw, "ph": self.ph,
                "pw": self.pw, "ceil": self.ceil}

    def arguments(self, x_shape: tuple[int, ...]) -> dict:
        samples, channels, height, width = x_shape
        out_h, out_w = self.output(height, width)
        return {"planes": samples * channels, "height": height, "width": width, "out_h": out_h, "out_w": out_w}


def _check(ctx, x: cla.Array, out: cla.Array, window: Window, names=("x", "out")) -> np.dtype:
    dtype = ctx.real_dtype(x.dtype)
    check_array(ctx, x, names[0])
    if x.ndim != 4:
        raise ValueError(f"{names[0]} must be (samples, channels, height, width), got {tuple(x.shape)}")
    check_array(ctx, out, names[1], dtype=dtype, shape=(*x.shape[:2], *window.output(*x.shape[2:])))
    return dtype


def _launch(items: int) -> tuple[tuple, tuple]:
    return (-(-items // LOCAL) * LOCAL,), (LOCAL,)


def max_forward(ctx, x: cla.Array, out: cla.Array, where: cla.Array, window: Window) -> cl.Event:
    """out = the max of each window of x; where = its position in its image (for backward)."""
    dtype = _check(ctx, x, out, window)
    check_array(ctx, where, "where", dtype=np.uint32, shape=out.shape)
    args = window.arguments(x.shape)
    kernel = ctx.kernel("pool.cl", "max_forward", **window.params(dtype))
    return kernel(ctx.queue, *_launch(args["planes"] * args["out_h"]), x=x, out=out, where=where, **args)


def _backward_launch(ctx, dx: cla.Array, window: Window, args: dict) -> tuple[tuple, tuple]:
    """Windows apart: dx zeroed (pixels outside every window), one work-item per output row
    scattering; else one per input row gathering."""
    if window.apart:
        memory.fill(ctx, dx, 0.0)
        return _launch(args["planes"] * args["out_h"])
    return _launch(args["planes"] * args["height"])


def max_backward(ctx, dy: cla.Array, where: cla.Array, dx: cla.Array, window: Window) -> cl.Event:
    """dx = the gradient of max_forward's input from dy (the windows' maxima get it)."""
    dtype = _check(ctx, dx, dy, window, ("dx", "dy"))
    check_array(ctx, where, "where", dtype=np.uint32, shape=dy.shape)
    args = window.arguments(dx.shape)
    kernel = ctx.kernel("pool.cl", "max_backward", **window.params(dtype))
    return kernel(ctx.queue, *_backward_launch(ctx, dx, window, args), dy=dy, where=where, dx=dx, **args)


def avg_forward(ctx, x: cla.Array, out: cla.Array, window: Window, count_include_pad: bool = True) -> cl.Event:
    dtype = _check(ctx, x, out, window)
    args = window.arguments(x.shape)
    kernel = ctx.kernel("pool.cl", "avg_forward", **window.params(dtype))
    return kernel(ctx.queue, *_launch(args["planes"] * args["out_h"]), x=x, out=out,
                  count_pad=int(count_include_pad), **args)


def avg_backward(ctx, dy: cla.Array, dx: cla.Array, window: Window, count_include_pad: bool = True) -> cl.Event:
    dtype = _check(ctx, dx, dy, window, ("dx", "dy"))
    args = window.arguments(dx.shape)
    kernel = ctx.kernel("pool.cl", "avg_backward", **window.params(dtype))
    return kernel(ctx.queue, *_backward_launch(ctx, dx, window, args), dy=dy, dx=dx,
                  count_pad=int(count_include_pad), **args)


def global_avg_forward(ctx, x: cla.Array, out: cla.Array) -> cl.Event:
    """out (samples, channels, 1, 1) = the mean of each channel's plane of x."""
    dtype = ctx.real_dtype(x.dtype)
    check_array(ctx, x, "x")
    check_array(ctx, out, "out", dtype=dtype, shape=(*x.shape[:2], 1, 1))
    planes, pixels = x.shape[0] * x.shape[1], x.shape[2] * x.shape[3]
    kernel = ctx.kernel("pool.cl", "global_avg_forward", dtype=dtype)
    return kernel(ctx.queue, *_launch(planes), x=x, out=out, planes=planes, pixels=pixels)


def global_avg_backward(ctx, dy: cla.Array, dx: cla.Array) -> cl.Event:
    dtype = ctx.real_dtype(dx.dtype)
    check_array(ctx, dx, "dx")
    check_array(ctx, dy, "dy", dtype=dtype, shape=(*dx.shape[:2], 1, 1))
    planes, pixels = dx.shape[0] * dx.shape[1], dx.shape[2] * dx.shape[3]
    kernel = ctx.kernel("pool.cl", "global_avg_backward", dtype=dtype)
    return kernel(ctx.queue, *_launch(planes), dy=dy, dx=dx, planes=planes, pixels=pixels)


def _adaptive(ctx, x: cla.Array, out: cla.Array, names: tuple[str, str]) -> tuple[np.dtype, dict]:
    dtype = ctx.real_dtype(x.dtype)
    check_array(ctx, x, names[0])
    check_array(ctx, out, names[1], dtype=dtype)
    if x.ndim != 4 or out.ndim != 4 or out.shape[:2] != x.shape[:2]:
        raise ValueError(f"{names[0]} {tuple(x.shape)} and {names[1]} {tuple(out.shape)} must be (samples, channels, "
                         "height, width) of the same samples and channels")
    samples, channels, height, width = x.shape
    return dtype, {"planes": samples * channels, "height": height, "width": width, "out_h": out.shape[2],
                   "out_w": out.shape[3]}


def adaptive_avg_forward(ctx, x: cla.Array, out: cla.Array) -> cl.Event:
    """out (samples, channels, out_h, out_w) = PyTorch's adaptive average of x over windows that
    cover each side evenly (floor(i s / n) to ceil((i + 1) s / n))."""
    dtype, args = _adaptive(ctx, x, out, ("x", "out"))
    kernel = ctx.kernel("pool.cl", "adaptive_avg_forward", dtype=dtype)
    return kernel(ctx.queue, *_launch(args["planes"] * args["out_h"]), x=x, out=out, **args)


def adaptive_avg_backward(ctx, dy: cla.Array, dx: cla.Array) -> cl.Event:
    """dx = the gradient of adaptive_avg_forward's input from dy (gathered: no pixel written twice)."""
    dtype, args = _adaptive(ctx, dx, dy, ("dx", "dy"))
    kernel = ctx.kernel("pool.cl", "adaptive_avg_backward", dtype=dtype)
    return kernel(ctx.queue, *_launch(args["planes"] * args["height"]), dy=dy, dx=dx, **args)
