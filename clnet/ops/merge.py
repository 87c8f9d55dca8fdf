"""Where a block's branches meet (kernels/merge.cl): sums, concatenations along the first axis of
each sample, and products with a factor broadcast over runs of elements, with their gradients."""

from __future__ import annotations

import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array, launch, launch_elementwise, row_launch


def _elementwise(ctx, name: str, a: cla.Array, b: cla.Array, out: cla.Array) -> cl.Event:
    dtype = ctx.real_dtype(a.dtype)
    check_array(ctx, a, "a")
    for label, array in (("b", b), ("out", out)):
        check_array(ctx, array, label, dtype=dtype)
        if array.size != a.size:
            raise ValueError(f"{label} must have a's {a.size} elements, got shape {tuple(array.shape)}")
    kernel = ctx.kernel("merge.cl", name, dtype=dtype)
    return launch_elementwise(ctx, kernel, a.size, dtype, a=a, b=b, out=out, n=a.size)


def add(ctx, a: cla.Array, b: cla.Array, out: cla.Array) -> cl.Event:
    """out = a + b, elementwise, for arrays of one size (out may be a or b). Queued."""
    return _elementwise(ctx, "add", a, b, out)


def multiply(ctx, a: cla.Array, b: cla.Array, out: cla.Array) -> cl.Event:
    """out = a * b, elementwise, for arrays of one size (out may be a or b). Queued."""
    return _elementwise(ctx, "multiply", a, b, out)


def copy_columns(ctx, src: cla.Array, dst: cla.Array, src_at: int, dst_at: int, cols: int) -> cl.Event:
    """dst[r, dst_at:dst_at + cols] = src[r, src_at:src_at + cols] for every row r, with src and
    dst seen as (rows, the rest of each sample): one branch's part of a concatenation. Queued."""
    dtype = ctx.real_dtype(src.dtype)
    check_array(ctx, src, "src")
    check_array(ctx, dst, "dst", dtype=dtype)
    rows = src.shape[0]
    src_stride, dst_stride = src.size // max(rows, 1), dst.size // max(dst.shape[0], 1)
    if dst.shape[0] != rows or src_at + cols > src_stride or dst_at + cols > dst_stride:
        raise ValueError(f"columns {src_at}..{src_at + cols} of src {tuple(src.shape)} do not fit columns "
                         f"{dst_at}..{dst_at + cols} of dst {tuple(dst.shape)}")
    kernel = ctx.kernel("merge.cl", "copy_columns", dtype=dtype)
    return kernel(ctx.queue, *row_launch(cols, rows, dtype), src=src, dst=dst, rows=rows, cols=cols,
                  src_stride=src_stride, src_at=src_at, dst_stride=dst_stride, dst_at=dst_at)


def _runs(ctx, a: cla.Array, g: cla.Array, names: tuple[str, str]) -> tuple:
    dtype = ctx.real_dtype(a.dtype)
    check_array(ctx, a, names[0])
    check_array(ctx, g, names[1], dtype=dtype)
    if g.size == 0 or a.size % g.size:
        raise ValueError(f"{names[1]} {tuple(g.shape)} does not divide {names[0]} {tuple(a.shape)} into runs")
    return dtype, g.size, a.size // g.size


def scale_runs(ctx, a: cla.Array, g: cla.Array, out: cla.Array) -> cl.Event:
    """out = a * g with g broadcast: a and out hold g.size runs of a.size / g.size elements (each
    image's channel planes for g of (batch, channels, 1, 1)), run r scaled by g[r]. Queued."""
    dtype, runs, inner = _runs(ctx, a, g, ("a", "g"))
    check_array(ctx, out, "out", dtype=dtype)
    if out.size != a.size:
        raise ValueError(f"out must have a's {a.size} elements, got shape {tuple(out.shape)}")
    kernel = ctx.kernel("merge.cl", "scale_runs", dtype=dtype)
    return kernel(ctx.queue, *row_launch(inner, runs, dtype), a=a, g=g, out=out, runs=runs, inner=inner)


def run_dots(ctx, a: cla.Array, b: cla.Array, out: cla.Array) -> cl.Event:
    """out[r] = sum(a[run r] * b[run r]) for a and b of out.size runs each: the gradient of
    scale_runs' factor. Deterministic (a fixed order). Queued."""
    dtype, runs, inner = _runs(ctx, a, out, ("a", "out"))
    check_array(ctx, b, "b", dtype=dtype)
    if b.size != a.size:
        raise ValueError(f"b must have a's {a.size} elements, got shape {tuple(b.shape)}")
    kernel = ctx.kernel("merge.cl", "run_dots", dtype=dtype)
    return launch(ctx, kernel, runs, a=a, b=b, out=out, runs=runs, inner=inner)

