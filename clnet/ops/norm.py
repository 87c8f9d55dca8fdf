"""Batch and layer normalization's kernels (kernels/norm.cl): statistics per segment of an array
seen as (outer, segments, inner), running statistics, the backward pass's sums, and the
elementwise passes over rows of `cols` elements with their statistics and affine parameters
per row or per column. Every call is queued, not waited on."""

from __future__ import annotations

from dataclasses import dataclass

import pyopencl as cl
import pyopencl.array as cla

from . import activations, memory
from .arrays import check_array, vector_width

Segments = tuple[int, int, int]  # (outer, segments, inner)
ROW_GROUP = 8  # vectors of a row per work-group in the elementwise passes


@dataclass(frozen=True)
class Fused:
    """Batch norm's activation, for the backward kernels: its name and parameter, the layer's
    output `out` (what a derivative of a reads) and its shift (with the scale: z = xhat * scale +
    shift, what a derivative of z reads; None: no affine parameters)."""

    activation: str = "linear"
    alpha: float | None = None
    out: cla.Array | None = None
    shift: cla.Array | None = None

    def arguments(self, dy: cla.Array) -> dict:
        """The kernels' out, shift and act_alpha arguments (dy where an array is not read)."""
        return {"out": dy if self.out is None else self.out, "shift": dy if self.shift is None else self.shift,
                **activations.alpha_argument(self.activation, self.alpha)}


def _rows(ctx, name: str, count: int, dtype) -> cla.Array:
    """A scratch vector of `count` per-row partial results."""
    return cla.Array(ctx.queue, count, dtype, data=ctx.scratch(f"norm.{name}", max(count, 1) * dtype.itemsize))


def _launch(items: int) -> tuple[tuple, tuple]:
    return (-(-items // 8) * 8,), (8,)


def moments(ctx, x: cla.Array, mean: cla.Array, var: cla.Array, segments: Segments) -> None:
    """mean[s] and var[s] (biased) of every segment of x: each row's mean and squared deviations
    (a work-item each), then combined per segment."""
    dtype = ctx.real_dtype(x.dtype)
    outer, count, inner = segments
    check_array(ctx, x, "x")
    if x.size != outer * count * inner:
        raise ValueError(f"x has {x.size} elements, not {outer} x {count} x {inner}")
    for name, a in (("mean", mean), ("var", var)):
        check_array(ctx, a, name, dtype=dtype, shape=(count,))
    rows = outer * count
    row_mean, row_m2 = _rows(ctx, "a", rows, dtype), _rows(ctx, "b", rows, dtype)
    ctx.kernel("norm.cl", "row_moments", dtype=dtype)(ctx.queue, *_launch(rows), x=x, row_mean=row_mean,
                                                      row_m2=row_m2, rows=rows, inner=inner)
    ctx.kernel("norm.cl", "combine_moments", dtype=dtype)(ctx.queue, *_launch(count), row_mean=row_mean,
                                                          row_m2=row_m2, mean=mean, var=var, outer=outer,
                                                          segments=count, inner=inner)


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
         weighted: bool = False, fused: Fused | None = None) -> None:
    """s1[s] = sum of g * w and s2[s] = sum of g * w * xhat over every segment s, w = scale[i]
    when weighted, else 1; xhat from the statistics of the segment, or of the outer index; g = dy,
    or dy * f'(a or z) for batch norm's fused activation (`fused`; scale then its affine scale)."""
    dtype = ctx.real_dtype(dy.dtype)
    outer, count, inner = segments
    check_array(ctx, dy, "dy")
    check_array(ctx, x, "x", dtype=dtype, shape=dy.shape)
    for name, a in (("s1", s1), ("s2", s2)):
        check_array(ctx, a, name, dtype=dtype, shape=(count,))
    rows = outer * count
    row_a, row_b = _rows(ctx, "a", rows, dtype), _rows(ctx, "b", rows, dtype)
    fused = fused or Fused()
    kernel = ctx.kernel("norm.cl", "row_sums2", dtype=dtype, stats_by=stats_by, weighted=weighted,
                        activation=fused.activation, affine=fused.shift is not None)
    kernel(ctx.queue, *_launch(rows), dy=dy, x=x, mean=mean, var=var, scale=dy if scale is None else scale, eps=eps,
           row_a=row_a, row_b=row_b, rows=rows, segments=count, inner=inner, **fused.arguments(dy))
    ctx.kernel("norm.cl", "combine_sums", dtype=dtype)(ctx.queue, *_launch(count), row_a=row_a, row_b=row_b, s1=s1,
                                                       s2=s2, outer=outer, segments=count)


def column_sums(ctx, dy: cla.Array, x: cla.Array, mean: cla.Array, var: cla.Array, eps: float, s1: cla.Array,
                s2: cla.Array, cols: int) -> cl.Event:
    """Layer norm's parameter gradients: s1[c] = sum of dy and s2[c] = sum of dy * xhat over
    the rows of `cols` elements, each row with its own mean and var. One work-item per vector of
    columns walks the rows (a 2048 x 128 layer: 0.15-0.2 ms, where `sums` by rows took 1.3-1.6)."""
    dtype = ctx.real_dtype(dy.dtype)
    check_array(ctx, dy, "dy")
    check_array(ctx, x, "x", dtype=dtype, shape=dy.shape)
    rows = dy.size // cols
    for name, a, size in (("mean", mean, rows), ("var", var, rows), ("s1", s1, cols), ("s2", s2, cols)):
        check_array(ctx, a, name, dtype=dtype)
        if a.size != size:
            raise ValueError(f"{name} must have {size} elements, got {a.size}")
    kernel = ctx.kernel("norm.cl", "column_sums2", dtype=dtype)
    vectors = -(-cols // vector_width(dtype))
    return kernel(ctx.queue, (-(-vectors // 8) * 8,), (8,), dy=dy, x=x, mean=mean, var=var, eps=eps, s1=s1, s2=s2,
                  rows=rows, cols=cols)


def _row_launch(x: cla.Array, cols: int, dtype) -> tuple[tuple, tuple]:
    rows = x.size // cols
    vectors = -(-cols // vector_width(dtype))
    return (-(-vectors // ROW_GROUP) * ROW_GROUP, rows), (ROW_GROUP, 1)


def normalize(ctx, x: cla.Array, mean: cla.Array, var: cla.Array, scale: cla.Array | None, shift: cla.Array | None,
              eps: float, y: cla.Array, cols: int, segments: int, stats_at: str, affine_at: str | None,
              activation: str = "linear", alpha: float | None = None) -> cl.Event:
    """y = f((x - mean) / sqrt(var + eps) * scale + shift) over rows of `cols` elements; statistics
    and affine parameters per row (index row % segments) or per column; f the activation."""
    dtype = ctx.real_dtype(x.dtype)
    check_array(ctx, x, "x")
    check_array(ctx, y, "y", dtype=dtype, shape=x.shape)
    kernel = ctx.kernel("norm.cl", "norm_forward", dtype=dtype, stats_at=stats_at, affine_at=affine_at,
                        activation=activation)
    return kernel(ctx.queue, *_row_launch(x, cols, dtype), x=x, mean=mean, var=var, scale=x if scale is None else scale,
                  shift=x if shift is None else shift, eps=eps, y=y, segments=segments, cols=cols,
                  **activations.alpha_argument(activation, alpha))


def normalize_backward(ctx, dy: cla.Array, x: cla.Array, mean: cla.Array, var: cla.Array, scale: cla.Array | None,
                       s1: cla.Array, s2: cla.Array, eps: float, count: int, dx: cla.Array, cols: int, segments: int,
                       stats_at: str, affine_at: str | None, weighted: bool = False,
                       fused: Fused | None = None) -> cl.Event:
    """dx = pre * invstd / count * (count * g * w - s1 - xhat * s2): pre = scale, w = 1 (batch
    norm, with its statistics' sums s1 and s2), or pre = 1, w = scale (weighted: layer norm); g =
    dy, or dy * f'(a or z) for batch norm's fused activation (`fused`)."""
    dtype = ctx.real_dtype(dy.dtype)
    check_array(ctx, dy, "dy")
    check_array(ctx, x, "x", dtype=dtype, shape=dy.shape)
    check_array(ctx, dx, "dx", dtype=dtype, shape=dy.shape)
    fused = fused or Fused()
    kernel = ctx.kernel("norm.cl", "norm_backward", dtype=dtype, stats_at=stats_at, affine_at=affine_at,
                        weighted=weighted, activation=fused.activation)
    return kernel(ctx.queue, *_row_launch(dy, cols, dtype), dy=dy, x=x, mean=mean, var=var,
                  scale=dy if scale is None else scale, s1=s1, s2=s2, eps=eps, count=float(count), dx=dx,
                  segments=segments, cols=cols, **fused.arguments(dy))


def zeros(ctx, size: int, dtype) -> cla.Array:
    """A zeroed device vector (what the backward pass of running statistics takes for s1, s2)."""
    found = cla.empty(ctx.queue, size, dtype)
    memory.fill(ctx, found, 0.0)
    return found
