"""Upsampling of (samples, channels, height, width) images by whole scale factors, nearest or
bilinear, as PyTorch's nn.Upsample (kernels/upsample.cl). Queued, not waited on."""

from __future__ import annotations

import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array, launch

MODES = ("nearest", "bilinear")


def _checked(ctx, x: cla.Array, out: cla.Array, scale: tuple[int, int], names=("x", "out")):
    dtype = ctx.real_dtype(x.dtype)
    check_array(ctx, x, names[0])
    if x.ndim != 4:
        raise ValueError(f"{names[0]} must be (samples, channels, height, width), got {tuple(x.shape)}")
    samples, channels, height, width = x.shape
    check_array(ctx, out, names[1], dtype=dtype, shape=(samples, channels, height * scale[0], width * scale[1]))
    return dtype, {"planes": samples * channels, "height": height, "width": width, "sh": scale[0], "sw": scale[1]}


def forward(ctx, x: cla.Array, out: cla.Array, scale: tuple[int, int], mode: str) -> cl.Event:
    """out = x upsampled by scale (sh, sw): (samples, channels, height * sh, width * sw)."""
    dtype, sizes = _checked(ctx, x, out, scale)
    kernel = ctx.kernel("upsample.cl", "upsample_forward", dtype=dtype, mode=mode)
    return launch(ctx, kernel, out.size, x=x, out=out, **sizes)


def backward(ctx, dy: cla.Array, dx: cla.Array, scale: tuple[int, int], mode: str) -> cl.Event:
    """dx = the gradient of the input from dy, the output's."""
    dtype, sizes = _checked(ctx, dx, dy, scale, ("dx", "dy"))
    kernel = ctx.kernel("upsample.cl", "upsample_backward", dtype=dtype, mode=mode)
    return launch(ctx, kernel, dx.size, dy=dy, dx=dx, **sizes)
