"""Embedding tables' kernels (kernels/embedding.cl): rows picked by ids, and the table's gradient
as sums in a fixed order (the same bits on every run and device: no float atomics). The ids are
held as the network's reals, exact up to MAX_ID. Every call is queued."""

from __future__ import annotations

import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array

MAX_ID = {"float32": 2**24, "float64": 2**53}  # vocabularies up to this size hold their ids exactly
LOCAL = 8
# work-items per compute unit in the gradient: each reads every id, so as few as fill the device
# (a CPU core: 64 columns or chunks; a GPU's many units: chunks of the vocabulary). 96 x 128 from
# 2048 positions on 2 cores: 3.8 ms with 4096 work-items, 0.4 ms with 128.
ITEMS_PER_UNIT = 64


def _check(ctx, ids: cla.Array, table: cla.Array, rows: cla.Array, names: tuple[str, str]) -> tuple:
    dtype = ctx.real_dtype(table.dtype)
    check_array(ctx, ids, "ids", dtype=dtype)
    check_array(ctx, table, names[0])
    vocab, dim = table.shape
    check_array(ctx, rows, names[1], dtype=dtype, shape=(*ids.shape, dim))
    return dtype, ids.size, dim, vocab


def gather(ctx, ids: cla.Array, table: cla.Array, out: cla.Array) -> cl.Event:
    """out[..., :] = table[ids[...], :] for ids of any shape (checked to be in range beforehand:
    the kernel trusts them). Queued."""
    dtype, positions, dim, _ = _check(ctx, ids, table, out, ("table", "out"))
    kernel = ctx.kernel("embedding.cl", "embedding_gather", dtype=dtype)
    return kernel(ctx.queue, (-(-dim // LOCAL) * LOCAL, positions), (LOCAL, 1), ids=ids, table=table, out=out,
                  positions=positions, dim=dim)


def scatter(ctx, ids: cla.Array, delta: cla.Array, grad: cla.Array) -> cl.Event:
    """grad[v] = the sum of delta[p] over the positions p with ids[p] == v (0 for ids not
    present), each in the order of p. Queued."""
    dtype, positions, dim, vocab = _check(ctx, ids, grad, delta, ("grad", "delta"))
    chunks = max(1, min(vocab, ITEMS_PER_UNIT * ctx.info.compute_units // max(dim, 1)))
    chunk = -(-vocab // chunks)
    kernel = ctx.kernel("embedding.cl", "embedding_scatter", dtype=dtype)
    return kernel(ctx.queue, (-(-dim // LOCAL) * LOCAL, -(-vocab // chunk)), (LOCAL, 1), ids=ids, delta=delta,
                  grad=grad, positions=positions, dim=dim, vocab=vocab, chunk=chunk)
