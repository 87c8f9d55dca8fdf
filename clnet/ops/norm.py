"""Batch and layer normalization's kernels (kernels/norm.cl): statistics per segment of an array
seen as (outer, segments, inner), running statistics, the backward pass's sums, and the
elementwise passes over rows of `cols` elements with their statistics and affine parameters
per row or per column. Every call is queued, not waited on."""

from __future__ import annotations

import pyopencl as cl
import pyopencl.array as cla

from . import memory
from .arrays import check_array, reduction_items, vector_width

Segments = tuple[int, int, int]  # (outer, segments, inner)
ROW_GROUP = 8  # vectors of a row per work-group in the elementwise passes


def _group(ctx) -> int:
    return min(reduction_items(ctx), 64)


def moments(ctx, x: cla.Array, mean: cla.Array, var: cla.Array, segments: Segments) -> cl.Event:
    """mean[s] and var[s] (biased) of every segment of x: one work-group each."""
    dtype = ctx.real_dtype(x.dtype)
    outer, count, inner = segments
    check_array(ctx, x, "x")
    if x.size != outer * count * inner:
        raise ValueError(f"x has {x.size} elements, not {outer} x {count} x {inner}")
    for name, a in (("mean", mean), ("var", var)):
        check_array(ctx, a, name, dtype=dtype, shape=(count,))
    items = _group(ctx)
    kernel = ctx.kernel("norm.cl", "moments", dtype=dtype)
    return kernel(ctx.queue, (count * items,), (items,), x=x, mean=mean, var=var, outer=outer, segments=count,
                  inner=inner, sum_partial=cl.LocalMemory(items * dtype.itemsize))


def running_update(ctx, mean: cla.Array, var: cla.Array, running_mean: cla.Array, running_var: cla.Array,
                   momentum: float, count: int) -> cl.Event:
    """running = (1 - momentum) running + momentum batch, the variance unbiased (count values)."""
    dtype = ctx.real_dtype(mean.dtype)
    segments = mean.size
    for name, a in (("var", var), ("running_mean", running_mean), ("running_var", running_var)):
        check_array(ctx, a, name, dtype=dtype, shape=(segments,))
    kernel = ctx.kernel("norm.cl", "running_update", dtype=dtype)
    local = 8
    return kernel(ctx.queue, (-(-segments // local) * local,), (local,), mean=mean, var=var,
                  running_mean=running_mean, running_var=running_var, momentum=momentum,
                  unbias=count / (count - 1), segments=segments)


def sums(ctx, dy: cla.Array, x: cla.Array, mean: cla.Array, var: cla.Array, scale: cla.Array | None, eps: float,
         s1: cla.Array, s2: cla.Array, segments: Segments, stats_by: str = "segment",
         weighted: bool = False) -> cl.Event:
    """s1[s] = sum of dy * w and s2[s] = sum of dy * w * xhat over every segment s, w = scale[i]
    when weighted, else 1; xhat from the statistics of the segment, or of the outer index."""
    dtype = ctx.real_dtype(dy.dtype)
    outer, count, inner = segments
    check_array(ctx, dy, "dy")
    check_array(ctx, x, "x", dtype=dtype, shape=dy.shape)
    for name, a in (("s1", s1), ("s2", s2)):
        check_array(ctx, a, name, dtype=dtype, shape=(count,))
    items = _group(ctx)
    kernel = ctx.kernel("norm.cl", "sums", dtype=dtype, stats_by=stats_by, weighted=weighted)
    local = cl.LocalMemory(items * dtype.itemsize)
    return kernel(ctx.queue, (count * items,), (items,), dy=dy, x=x, mean=mean, var=var,
                  scale=dy if scale is None else scale, eps=eps, s1=s1, s2=s2, outer=outer, segments=count,
                  inner=inner, a_partial=local, b_partial=cl.LocalMemory(items * dtype.itemsize))


def _rows(x: cla.Array, cols: int, dtype) -> tuple[tuple, tuple]:
    rows = x.size // cols
    vectors = -(-cols // vector_width(dtype))
    return (-(-vectors // ROW_GROUP) * ROW_GROUP, rows), (ROW_GROUP, 1)


def normalize(ctx, x: cla.Array, mean: cla.Array, var: cla.Array, scale: cla.Array | None, shift: cla.Array | None,
              eps: float, y: cla.Array, cols: int, segments: int, stats_at: str, affine_at: str | None) -> cl.Event:
    """y = (x - mean) / sqrt(var + eps) * scale + shift over rows of `cols` elements; statistics
    and affine parameters per row (index row % segments) or per column."""
    dtype = ctx.real_dtype(x.dtype)
    check_array(ctx, x, "x")
    check_array(ctx, y, "y", dtype=dtype, shape=x.shape)
    kernel = ctx.kernel("norm.cl", "norm_forward", dtype=dtype, stats_at=stats_at, affine_at=affine_at)
    return kernel(ctx.queue, *_rows(x, cols, dtype), x=x, mean=mean, var=var, scale=x if scale is None else scale,
                  shift=x if shift is None else shift, eps=eps, y=y, segments=segments, cols=cols)


def normalize_backward(ctx, dy: cla.Array, x: cla.Array, mean: cla.Array, var: cla.Array, scale: cla.Array | None,
                       s1: cla.Array, s2: cla.Array, eps: float, count: int, dx: cla.Array, cols: int, segments: int,
                       stats_at: str, affine_at: str | None, weighted: bool = False) -> cl.Event:
    """dx = pre * invstd / count * (count * dy * w - s1 - xhat * s2): pre = scale, w = 1 (batch
    norm, with its statistics' sums s1 and s2), or pre = 1, w = scale (weighted: layer norm)."""
    dtype = ctx.real_dtype(dy.dtype)
    check_array(ctx, dy, "dy")
    check_array(ctx, x, "x", dtype=dtype, shape=dy.shape)
    check_array(ctx, dx, "dx", dtype=dtype, shape=dy.shape)
    kernel = ctx.kernel("norm.cl", "norm_backward", dtype=dtype, stats_at=stats_at, affine_at=affine_at,
                        weighted=weighted)
    return kernel(ctx.queue, *_rows(dy, cols, dtype), dy=dy, x=x, mean=mean, var=var,
                  scale=dy if scale is None else scale, s1=s1, s2=s2, eps=eps, count=float(count), dx=dx,
                  segments=segments, cols=cols)


def zeros(ctx, size: int, dtype) -> cla.Array:
    """A zeroed device vector (what the backward pass of running statistics takes for s1, s2)."""
    found = cla.empty(ctx.queue, size, dtype)
    memory.fill(ctx, found, 0.0)
    return found
