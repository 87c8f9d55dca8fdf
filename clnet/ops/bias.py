"""A layer's bias: broadcast over the rows of a batch, and its gradient (kernels/bias.cl)."""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .arrays import WORK_GROUP, check_array, launch, vector_width


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
    vectors = -(-cols // vector_width(dtype))
    # a power of two: few work-group sizes, since PoCL compiles the kernel again for each new one
    local = min(WORK_GROUP, 1 << (vectors - 1).bit_length())
    return kernel(ctx.queue, (-(-vectors // local) * local, rows), (local, 1), z=z, b=b, rows=rows, cols=cols)


def bias_gradient(ctx, dz: cla.Array, db: cla.Array) -> cl.Event:
    """db = dz summed over its rows (the batch). Queued, not waited on."""
    dtype = _check(ctx, dz, db, ("dz", "db"))
    rows, cols = dz.shape
    kernel = ctx.kernel("bias.cl", "bias_gradient", dtype=dtype)
    return launch(ctx, kernel, -(-cols // vector_width(dtype)), dz=dz, db=db, rows=rows, cols=cols)
