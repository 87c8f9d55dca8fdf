"""Scaled dot-product attention's kernels (kernels/attention.cl), batched over samples and heads:
one launch per product for the whole batch, not one per head.

The queries, keys and values are `Heads`: an array of (batch * seq) rows, each holding `heads`
heads of `head_size` elements from column `at` (the input projection's output holds q, k and v
side by side in each row). Scores and probabilities are (batch * heads, seq, seq) arrays. Every
sum runs in a fixed order (the same bits on every run and device). Every call is queued.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array, launch

GROUP = 64  # work-items per work-group of the products
TILE = 4  # positions per work-item in the products (the template's `tile`)
# Register tiles on CPUs: 4 rows of scores per work-item of dots, 4 vectors of a head per
# work-item of the weighted sums (16 accumulators each: AVX-512's 32 registers hold them). At
# batch 32 x 64 positions x 4 heads of 32 (causal) on 2 Zen 4 cores: dots 1.87 -> 0.92 ms, the
# weighted sums 0.97 -> 0.39 ms, against one row or vector. GPUs keep one (issue 32 shapes them).
CPU_ROWS, CPU_VECS = 4, 4


def register_tiles(ctx) -> tuple[int, int]:
    """(rows of scores per work-item of dots, most vectors of a head per work-item of the weighted
    sums) on this device."""
    return (CPU_ROWS, CPU_VECS) if ctx.info.type == "CPU" else (1, 1)


@dataclass(frozen=True)
class Shape:
    """(batch, seq, heads, head_size) of an attention."""

    batch: int
    seq: int
    heads: int
    head_size: int

    @property
    def width(self) -> int:
        return self.heads * self.head_size

    @property
    def scores(self) -> tuple[int, int, int]:
        return self.batch * self.heads, self.seq, self.seq


@dataclass(frozen=True)
class Heads:
    """The heads in an array of (batch * seq) rows, from column `at` of each row."""

    array: cla.Array
    at: int = 0

    def stride(self, shape: Shape) -> int:
        rows = shape.batch * shape.seq
        stride = self.array.size // rows
        if self.array.size != rows * stride or self.at + shape.width > stride:
            raise ValueError(f"an array of shape {tuple(self.array.shape)} does not hold {rows} rows with "
                             f"{shape.heads} heads of {shape.head_size} from column {self.at}")
        return stride


def width(shape: Shape, dtype) -> int:
    """Elements of a head per vector (kernels/attention.cl): the widest of 256 bits that divides
    the head size."""
    widest = 32 // dtype.itemsize
    return next(w for w in (16, 8, 4, 2, 1) if w <= widest and shape.head_size % w == 0)


def _launch(shape: Shape, columns: int, rows: int) -> tuple[tuple, tuple]:
    """Work-groups of GROUP items over (columns, rows) of each sample and head: PoCL pays for
    every work-group, so rows fill a group whose columns are few (4 vectors of a head of 32)."""
    local0 = min(GROUP, 1 << (columns - 1).bit_length())
    local1 = min(1 << (rows - 1).bit_length(), max(1, GROUP // local0))
    return ((-(-columns // local0) * local0, -(-rows // local1) * local1, shape.batch * shape.heads),
            (local0, local1, 1))


def _sizes(shape: Shape) -> dict:
    return {"seq": shape.seq, "heads": shape.heads, "head_size": shape.head_size}


def _scores(ctx, a: cla.Array, name: str, shape: Shape, dtype) -> None:
    check_array(ctx, a, name, dtype=dtype)
    if a.size != shape.batch * shape.heads * shape.seq * shape.seq:
        raise ValueError(f"{name} must hold {shape.scores} scores, got shape {tuple(a.shape)}")


def dots(ctx, x: Heads, y: Heads, out: cla.Array, shape: Shape, scale: float, causal: bool) -> cl.Event:
    """out[bh, i, j] = scale * x[b, i, h] . y[b, j, h] (0 where causal and j > i): the scores
    q k^T / sqrt(head_size), or dC/dp from dC/d(output) and v."""
    dtype = ctx.real_dtype(x.array.dtype)
    check_array(ctx, x.array, "x")
    check_array(ctx, y.array, "y", dtype=dtype)
    _scores(ctx, out, "out", shape, dtype)
    rows = register_tiles(ctx)[0]
    kernel = ctx.kernel("attention.cl", "dots", dtype=dtype, width=width(shape, dtype), rows=rows, tile=TILE)
    return kernel(ctx.queue, *_launch(shape, -(-shape.seq // TILE), -(-shape.seq // rows)), x=x.array, y=y.array,
                  out=out, **_sizes(shape), x_stride=x.stride(shape), x_at=x.at, y_stride=y.stride(shape), y_at=y.at,
                  scale=scale, causal=int(causal))


def weighted_sum(ctx, w: cla.Array, y: Heads, out: Heads, shape: Shape, causal: bool,
                 transposed: bool = False) -> cl.Event:
    """out[b, i, h] = sum over j of w[bh, i, j] y[b, j, h] (transposed: w[bh, j, i]): the
    attention's output p v, and the gradients of v, q and k."""
    dtype = ctx.real_dtype(w.dtype)
    _scores(ctx, w, "w", shape, dtype)
    check_array(ctx, y.array, "y", dtype=dtype)
    check_array(ctx, out.array, "out", dtype=dtype)
    vector = width(shape, dtype)
    most = register_tiles(ctx)[1]
    vecs = next(v for v in (most, 2, 1) if v <= most and (shape.head_size // vector) % v == 0)
    kernel = ctx.kernel("attention.cl", "weighted_sum_transposed" if transposed else "weighted_sum", dtype=dtype,
                        width=vector, vecs=vecs, tile=TILE)
    return kernel(ctx.queue, *_launch(shape, shape.head_size // vector // vecs, -(-shape.seq // TILE)), w=w, y=y.array,
                  out=out.array, **_sizes(shape),
                  y_stride=y.stride(shape), y_at=y.at, out_stride=out.stride(shape), out_at=out.at,
                  causal=int(causal))


def softmax(ctx, s: cla.Array, p: cla.Array, shape: Shape, causal: bool) -> cl.Event:
    """p = the softmax of every row of the scores s (p may be s); causal rows are 0 past i."""
    dtype = ctx.real_dtype(s.dtype)
    _scores(ctx, s, "s", shape, dtype)
    _scores(ctx, p, "p", shape, dtype)
    rows = shape.batch * shape.heads * shape.seq
    vector = 32 // dtype.itemsize  # 256 bits
    return launch(ctx, ctx.kernel("attention.cl", "softmax", dtype=dtype, width=vector), rows, s=s, p=p, rows=rows,
                  seq=shape.seq, causal=int(causal))


def softmax_backward(ctx, p: cla.Array, g: cla.Array, shape: Shape, scale: float, causal: bool) -> cl.Event:
    """g = scale * dC/ds from g = dC/dp, through the softmax p, in place."""
    dtype = ctx.real_dtype(p.dtype)
    _scores(ctx, p, "p", shape, dtype)
    _scores(ctx, g, "g", shape, dtype)
    rows = shape.batch * shape.heads * shape.seq
    return launch(ctx, ctx.kernel("attention.cl", "softmax_backward", dtype=dtype, width=1), rows, p=p, g=g, rows=rows,
                  seq=shape.seq, scale=scale, causal=int(causal))
