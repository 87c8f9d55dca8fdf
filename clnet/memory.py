"""Fill and copy device arrays with clnet's own kernels (kernels/memory.cl)."""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .launch import check_array, element_offset, launch


def fill(ctx, a: cla.Array, value: float) -> cl.Event:
    """Set every element of the float array `a` to `value` (queued, not waited on)."""
    dtype = ctx.real_dtype(getattr(a, "dtype", None))
    check_array(ctx, a, "a")
    kernel = ctx.kernel("memory.cl", "fill", dtype=dtype)
    return launch(ctx, kernel, a.size, a.base_data, element_offset(a), dtype.type(value), np.uint32(a.size))


def copy(ctx, src: cla.Array, dst: cla.Array) -> cl.Event:
    """Copy `src` into `dst`, two float arrays of one dtype and shape (queued, not waited on)."""
    dtype = ctx.real_dtype(getattr(src, "dtype", None))
    check_array(ctx, src, "src")
    check_array(ctx, dst, "dst", dtype=dtype, shape=src.shape)
    kernel = ctx.kernel("memory.cl", "copy", dtype=dtype)
    return launch(ctx, kernel, src.size, src.base_data, element_offset(src),
                  dst.base_data, element_offset(dst), np.uint32(src.size))
