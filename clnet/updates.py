"""Optimizer steps on device parameters (kernels/updates.cl)."""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .launch import check_array, element_offset, launch


def sgd_step(ctx, w: cla.Array, g: cla.Array, learning_rate: float) -> cl.Event:
    """w -= learning_rate * g, elementwise. Queued, not waited on."""
    dtype = ctx.real_dtype(w.dtype)
    check_array(ctx, w, "w")
    check_array(ctx, g, "g", dtype=dtype, shape=w.shape)
    kernel = ctx.kernel("updates.cl", "sgd", dtype=dtype)
    return launch(ctx, kernel, w.size, w.base_data, element_offset(w), g.base_data, element_offset(g),
                  dtype.type(learning_rate), np.uint32(w.size))
