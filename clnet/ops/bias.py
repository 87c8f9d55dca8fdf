"""A layer's bias: broadcast over the rows of a batch, and its gradient (kernels/bias.cl)."""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array, launch, row_launch, vector_width


def _check(ctx, matrix: cla.Array, vector: cla.Array, names: tuple[str, str]) -> np.dtype:
    dtype = ctx.real_dtype(matrix.dtype)
    check_array(ctx, matrix, names[0])
    check_array(ctx, vector, names[1], dtype=dtype)
    if matrix.ndim != 2 or vector.ndim != 1 or vector.shape[0] != matrix.shape[1]:
        raise ValueError(f"{names[0]} must be (rows, cols) and {names[1]} (cols,); "
                         f"got {names[0]} {tuple(matrix.shape)} and {names[1]} {tuple(vector.shape)}")
    return dtype


def add_bias(ctx, z: cla.Array, b: cla.Array) -> cl.Event:
    """z[r, :] += b for every row r of the (rows, cols) array z. Queued, not waited on."""
    dtype = _check(ctx, z, b, ("z", "b"))
    rows, cols = z.shape
    kernel = ctx.kernel("bias.cl", "add_bias", dtype=dtype)
    return kernel(ctx.queue, *row_launch(cols, rows, dtype), z=z, b=b, rows=rows, cols=cols)


# column_sums' work-group: 16 adjacent columns by 16 row walkers; a chunk is at least 64 rows
COLUMN_GROUP, ROW_WALKERS, CHUNK_ROWS = 16, 16, 64


def bias_gradient(ctx, dz: cla.Array, db: cla.Array, gpu_shaped: bool | None = None) -> cl.Event:
    """db = dz summed over its rows (the batch). Queued, not waited on.

    On CPUs one work-item per vector of columns walks every row (what PoCL runs fastest); on
    other devices (gpu_shaped, None: by device type) `column_sums` reduces chunks of rows in
    local trees, so that a narrow layer still spreads over the device."""
    dtype = _check(ctx, dz, db, ("dz", "db"))
    rows, cols = dz.shape
    if gpu_shaped is None:
        gpu_shaped = ctx.info.type != "CPU"
    if gpu_shaped:
        return column_sums(ctx, dz, db)
    kernel = ctx.kernel("bias.cl", "bias_gradient", dtype=dtype)
    return launch(ctx, kernel, -(-cols // vector_width(dtype)), dz=dz, db=db, rows=rows, cols=cols)


def column_sums(ctx, x: cla.Array, out: cla.Array) -> cl.Event:
    """out = x summed over its rows by row chunks and local trees (kernels/bias.cl), for a
    contiguous (rows, cols) x: enough chunks for about four work-groups per compute unit, then
    one more launch over the chunks' sums. Queued."""
    dtype = _check(ctx, x, out, ("x", "out"))
    rows, cols = x.shape  # contiguous: _check's check_array says so
    kernel = ctx.kernel("bias.cl", "column_sums", dtype=dtype)
    column_groups = -(-cols // COLUMN_GROUP)
    chunks = max(1, min(-(-4 * ctx.info.compute_units // column_groups), rows // CHUNK_ROWS))
    chunk_rows = -(-rows // chunks)
    # a group's place in dimension 1 is its chunk: size the launch by the group as it will run
    local = kernel.work_group(ctx.device, (COLUMN_GROUP, ROW_WALKERS))
    scratch = cl.LocalMemory(local[0] * local[1] * dtype.itemsize)
    columns = -(-cols // local[0]) * local[0]
    if chunks == 1:
        return kernel(ctx.queue, (columns, local[1]), local, x=x, out=out, rows=rows, cols=cols, chunk_rows=rows,
                      scratch=scratch)
    partial = cla.Array(ctx.queue, (chunks, cols), dtype, data=ctx.scratch("bias.column_sums", chunks * cols *
                                                                             dtype.itemsize))
    kernel(ctx.queue, (columns, chunks * local[1]), local, x=x, out=partial, rows=rows, cols=cols,
           chunk_rows=chunk_rows, scratch=scratch)
    return kernel(ctx.queue, (columns, local[1]), local, x=partial, out=out, rows=chunks, cols=cols,
                  chunk_rows=chunks, scratch=scratch)
