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

from ..runtime import allocation
from ..runtime.kernels import Kernel
from ..runtime.programs import Templates

MAX_ELEMENTS = 2**32 - 1  # kernels index with uint
WORK_GROUP = 64  # one local size for every elementwise launch: PoCL compiles one variant
_VECTOR_WIDTH = Templates().module("vectors.cl").vector_width  # the templates' own rule


@functools.cache  # called on every launch; np.dtype(...).name takes microseconds
def vector_width(dtype) -> int:
    """Elements per work-item of the elementwise kernels (kernels/vectors.cl): 256 bits."""
    return _VECTOR_WIDTH(np.dtype(dtype).name)


def row_launch(cols: int, rows: int, dtype) -> tuple[tuple[int, int], tuple[int, int]]:
    """Global and local size of a kernel over (rows, cols) with vectors along each row in
    dimension 0 and the rows in dimension 1 (add_bias, bias_forward_*): the local size a power of
    two, since PoCL compiles a kernel again for each new one."""
    vectors = -(-cols // vector_width(dtype))
    local = min(WORK_GROUP, 1 << (vectors - 1).bit_length())
    return (-(-vectors // local) * local, rows), (local, 1)


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


def check_sample_shape(shape) -> tuple[int, ...]:
    """The shape of one sample as a tuple of positive ints: an int n is (n,)."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        dims = None
    if not dims or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in dims):
        raise ValueError(f"the shape of a sample must be a positive whole number or a tuple of them, got {shape!r}")
    return tuple(int(n) for n in dims)


def batch_shape(shape: tuple[int, ...]) -> str:
    """'(batch, 6)' or '(batch, 1, 8, 8)': how errors name an expected shape."""
    return f"(batch, {', '.join(map(str, shape))})"


def _first_non_finite(host: np.ndarray, name: str) -> ValueError:
    position = np.argwhere(~np.isfinite(host))[0]
    row, rest = position[0], tuple(int(i) for i in position[1:])
    where = f"row {row}, column {rest[0]}" if len(rest) == 1 else f"row {row}, position {rest}"
    return ValueError(f"{name} holds a non-finite value ({host[tuple(position)]}) at {where}; "
                      "clnet needs finite numbers: remove or impute such values first")


def check_ids(host: np.ndarray, vocab: int, name: str) -> None:
    """Token ids must be integers in 0..vocab-1: a float id or one outside the vocabulary would
    pick a wrong row (or none) of an embedding table, so it is refused, naming the first."""
    if host.dtype.kind not in "iu":
        raise TypeError(f"{name} holds token ids for an Embedding of {vocab} rows: they must be integers, got dtype "
                        f"{host.dtype}")
    bad = np.argwhere((host < 0) | (host >= vocab))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise ValueError(f"{name} holds id {host[where]} at {where}, outside the vocabulary: ids must be in "
                         f"0..{vocab - 1}")


def host_batch(data, shape, dtype: np.dtype, name: str = "x", ids: int | None = None) -> np.ndarray:
    """A (batch, *shape) contiguous numpy array of `dtype` from anything numpy reads as real
    numbers (lists, tuples, integer, boolean or other float arrays), checked to be finite.
    shape: one sample's shape (an int for rows of that many columns). ids: the data are token ids
    of a vocabulary of this size (`check_ids`), held as `dtype` once checked."""
    shape = check_sample_shape(shape)
    try:
        host = np.asarray(data)
    except (ValueError, TypeError) as exc:  # ragged lists, objects numpy cannot read
        raise ValueError(f"{name} must be a {batch_shape(shape)} array of real numbers: {exc}") from exc
    if host.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {host.dtype}")
    if host.shape[1:] != shape:
        what = f" (sequences of {shape[0]} token ids)" if ids is not None and len(shape) == 1 else ""
        raise ValueError(f"{name} must have shape {batch_shape(shape)}{what}, got {host.shape}")
    if host.shape[0] < 1:
        raise ValueError(f"{name} must have at least one row, got shape {host.shape}")
    if ids is not None:
        check_ids(host, ids, name)
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, reported below
        host = np.ascontiguousarray(host, dtype=dtype)
    if not np.isfinite(host).all():
        raise _first_non_finite(host, f"{name} (as {np.dtype(dtype).name})")
    return host


def to_device_batch(ctx, data, shape, dtype: np.dtype, name: str = "x",
                    check_device: bool = False, ids: int | None = None) -> cla.Array:
    """A (batch, *shape) device array of `dtype` from array-like host data or a device array.

    Host data goes through `host_batch` (converted once, checked finite) and is uploaded after
    its size is checked against the device. Device data must already have the dtype (no silent
    conversion on the device) and is used as it is, not copied; check_device checks that it is
    finite too (one reduction, and a download only to name the bad element). ids: token ids of
    a vocabulary of this size, checked on the host (integer device arrays are copied there once).
    """
    shape = check_sample_shape(shape)
    if ids is not None and isinstance(data, cla.Array):
        if data.dtype.kind not in "iu":
            raise TypeError(f"{name} holds token ids: on the device they must be an integer array, got "
                            f"{data.dtype.name}")
        data = data.get()
    if not isinstance(data, cla.Array):
        host = host_batch(data, shape, dtype, name, ids)
        allocation.check(ctx, {name: host.nbytes}, f"the copy of {name} on the device", "pass fewer rows at once")
        copy = allocation.guarded(ctx, f"the copy of {name} on the device", "pass fewer rows at once",
                                  lambda: cla.to_device(ctx.queue, host))
        ctx.track(copy, host.nbytes)  # until the copy is garbage-collected
        return copy
    if data.dtype != dtype:
        raise TypeError(f"{name} on the device must have dtype {dtype.name} like the network, got {data.dtype.name}")
    check_array(ctx, data, name)
    if tuple(data.shape[1:]) != shape or data.ndim != len(shape) + 1:
        raise ValueError(f"{name} must have shape {batch_shape(shape)}, got {tuple(data.shape)}")
    if data.shape[0] < 1:
        raise ValueError(f"{name} must have at least one row, got shape {tuple(data.shape)}")
    if check_device and not all_finite(ctx, data):
        raise _first_non_finite(data.get(), name)
    return data


FINITE_GROUPS = 4  # work-groups per compute unit in all_finite


def reduction_items(ctx) -> int:
    """Work-items of a work-group that sums an array (the one group of a cost, each group of a
    finite check): 256, or the device's largest power of 2 below that."""
    return min(256, 1 << (ctx.info.max_work_group_size.bit_length() - 1))


def sum_groups(ctx, size: int) -> int:
    """How many work-groups `group_sums` shares `size` elements among: a few per compute unit for
    large arrays (one group ran on one core: 8.8 ms for mnist's 2048 x 784), one for small ones."""
    return max(1, min(FINITE_GROUPS * ctx.info.compute_units, size // (reduction_items(ctx) * 64)))


def group_sums(ctx, name: str, a: cla.Array, out: cla.Array | None = None) -> cla.Array:
    """Queue memory.cl's kernel `name` (finite_check, square_sums) over the float array `a`: the
    sums of its term over each work-group's share (`sum_groups` of them, into `out` when given:
    a new array costs 13 us); returns them, not waited on."""
    dtype = ctx.real_dtype(a.dtype)
    items, groups = reduction_items(ctx), sum_groups(ctx, a.size)
    if out is None:
        out = cla.empty(ctx.queue, groups, dtype)
    check_array(ctx, out, "out", dtype=dtype, shape=(groups,))
    kernel = ctx.kernel("memory.cl", name, dtype=dtype)
    (items,) = kernel.work_group(ctx.device, (items,))  # each group writes out[its id]: count them as run
    kernel(ctx.queue, (groups * items,), (items,), x=a, out=out, n=a.size,
           partial=cl.LocalMemory(items * dtype.itemsize))
    return out


def all_finite(ctx, a: cla.Array) -> bool:
    """Whether every element of the float array `a` is finite: one launch, then a wait."""
    return bool(np.isfinite(group_sums(ctx, "finite_check", a).get()).all())
