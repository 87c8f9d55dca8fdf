"""Device memory checked before it is asked for: a buffer larger than the device's largest
allocation (CL_DEVICE_MAX_MEM_ALLOC_SIZE), or a set of buffers larger than its global memory, or
than what is left of it after what clnet already holds in the context (Context.memory_in_use),
is refused with a DeviceMemoryError naming the sizes, the limits and what to change, instead of
a driver error far from its cause. A refusal by the driver itself becomes the same error."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import pyopencl as cl

from .errors import DeviceMemoryError

T = TypeVar("T")
# the driver's words for "no memory": allocation failure, out of resources, out of host memory
_OUT_OF_MEMORY = {cl.status_code.MEM_OBJECT_ALLOCATION_FAILURE, cl.status_code.OUT_OF_RESOURCES,
                  cl.status_code.OUT_OF_HOST_MEMORY}


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def check(ctx, buffers: Mapping[str, int], purpose: str, advice: str) -> None:
    """Refuse `buffers` ({description: bytes}) for `purpose` when one exceeds the device's
    largest allocation or all together exceed its global memory; `advice` says what to change."""
    info = ctx.info
    largest = max(buffers.items(), key=lambda item: item[1], default=("", 0))
    if largest[1] > info.largest_allocation:
        raise DeviceMemoryError(
            f"{purpose} needs {_size(largest[1])} in one buffer ({largest[0]}), but {info.name!r} allows at most "
            f"{_size(info.largest_allocation)} per buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE); {advice}.")
    total = sum(buffers.values())
    if total > info.global_mem_bytes:
        raise DeviceMemoryError(
            f"{purpose} needs {_size(total)} of device memory in all, but {info.name!r} has "
            f"{_size(info.global_mem_bytes)}; {advice}.")
    in_use = getattr(ctx, "memory_in_use", 0)
    if in_use + total > info.global_mem_bytes:
        raise DeviceMemoryError(
            f"{purpose} needs {_size(total)} of device memory, but {_size(in_use)} of {info.name!r}'s "
            f"{_size(info.global_mem_bytes)} is in use by clnet (the networks, training buffers and data of this "
            f"context: ctx.memory_in_use); {advice}, or release some (del a network, or close its context).")


def guarded(ctx, purpose: str, advice: str, allocate: Callable[[], T]) -> T:
    """`allocate()`, with the driver's out-of-memory errors turned into a DeviceMemoryError."""
    try:
        return allocate()
    except cl.Error as exc:
        code = getattr(exc, "code", None)
        if code not in _OUT_OF_MEMORY and not isinstance(exc, cl.MemoryError):
            raise
        raise DeviceMemoryError(f"{ctx.info.name!r} could not allocate the memory for {purpose} ({exc}); "
                                f"{advice}.") from exc
