"""Checking device arrays, and the launch geometry of clnet's elementwise and row kernels.

Kernels take every array as its buffer plus an element offset (clnet.runtime.kernels passes
both for a pyopencl array), because pyopencl views keep their offset outside the buffer and
sub-buffers need aligned offsets.
"""

from __future__ import annotations

import functools

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from ..runtime.kernels import Kernel
from ..runtime.programs import Templates

MAX_ELEMENTS = 2**32 - 1  # kernels index with uint
WORK_GROUP = 64  # one local size for every elementwise launch: PoCL compiles one variant
_VECTOR_WIDTH = Templates().module("vectors.cl").vector_width  # the templates' own rule


@functools.cache  # called on every launch; np.dtype(...).name takes microseconds
def vector_width(dtype) -> int:
    """Elements per work-item of the elementwise kernels (kernels/vectors.cl): 256 bits."""
    return _VECTOR_WIDTH(np.dtype(dtype).name)


def element_offset(a: cla.Array) -> int:
    """The array's offset in its buffer, in elements."""
    return a.offset // a.dtype.itemsize


def check_array(ctx, a, name: str, dtype=None, shape: tuple | None = None) -> cla.Array:
    """`a` as a contiguous device array of `ctx`, with the dtype and shape asked for."""
    if not isinstance(a, cla.Array):
        raise TypeError(f"{name} must be a pyopencl.array.Array on the device, got {type(a).__name__}")
    if a.context != ctx.context:
        raise ValueError(f"{name} belongs to another OpenCL context than this clnet.Context's")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype.name}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (row-major without strides), got strides {a.strides}")
    if a.size + element_offset(a) > MAX_ELEMENTS:
        raise ValueError(f"{name} has {a.size} elements; clnet kernels index at most {MAX_ELEMENTS}")
    return a


def launch(ctx, kernel: Kernel, work_items: int, /, **arguments) -> cl.Event:
    """Queue `kernel` over `work_items` items (rounded up to whole work groups); no waiting."""
    groups = max(1, -(-work_items // WORK_GROUP))
    return kernel(ctx.queue, (groups * WORK_GROUP,), (WORK_GROUP,), **arguments)


def launch_elementwise(ctx, kernel: Kernel, elements: int, dtype, /, **arguments) -> cl.Event:
    """Queue an elementwise kernel (kernels/vectors.cl) over `elements` of dtype; no waiting."""
    return launch(ctx, kernel, -(-elements // vector_width(dtype)), **arguments)


def to_device_batch(ctx, data, columns: int, dtype: np.dtype, name: str = "x") -> cla.Array:
    """A (batch, columns) device array of `dtype` from a numpy-like or device array.

    Host data of any real numeric dtype is converted and uploaded; device data must already
    have the dtype (no silent conversion on the device) and is used as it is, not copied.
    """
    if isinstance(data, cla.Array):
        if data.dtype != dtype:
            raise TypeError(f"{name} on the device must have dtype {dtype.name} like the network, "
                            f"got {data.dtype.name}")
        check_array(ctx, data, name)
    else:
        host = np.asarray(data)
        if host.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {host.dtype}")
    shape = tuple(data.shape)
    if len(shape) != 2 or shape[1] != columns:
        raise ValueError(f"{name} must have shape (batch, {columns}), got {shape}")
    if shape[0] < 1:
        raise ValueError(f"{name} must have at least one row, got shape {shape}")
    if isinstance(data, cla.Array):
        return data
    return cla.to_device(ctx.queue, np.ascontiguousarray(host, dtype=dtype))
