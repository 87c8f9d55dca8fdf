"""Inverted dropout with a mask drawn from Philox (kernels/random.cl, kernel `dropout`).

Element g of a (layer, step) is dropped when (w >> 8) < round(rate * 2^24), w = word g % 4 of
the Philox block with counter (g // 4, layer, step) under the key, g counting the elements of the
whole batch (an MPI rank's part starts at its first row's); kept elements are scaled by
1 / (1 - rate). The mask is a pure function of (key, layer, step, e): the backward pass
recomputes the forward pass's mask instead of storing it, and every device draws the same one.
"""

from __future__ import annotations

import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array
from .rng import COUNTER_LIMIT, kernel_for, launch_sizes


def check_rate(rate) -> float:
    """`rate` as a float in [0, 1); ValueError otherwise."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"dropout must be a probability in [0, 1), got {rate!r}") from None
    if not 0 <= value < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {rate!r}")
    return value


def threshold(rate: float) -> int:
    """The 24-bit threshold below which an element is dropped."""
    return round(rate * 2**24)


def apply(ctx, src: cla.Array, dst: cla.Array, rate: float, key: int, layer: int, step: int,
          first: int = 0) -> cl.Event:
    """dst = src * mask / (1 - rate) for the mask of (key, layer, step), src and dst being the mask's
    elements first .. first + size (on an MPI rank, where its rows start in the whole batch); dst
    may be src. Queued."""
    dtype = ctx.real_dtype(src.dtype)
    check_array(ctx, src, "src")
    check_array(ctx, dst, "dst", dtype=dtype, shape=src.shape)
    kernel, lanes = kernel_for(ctx, "dropout", dtype)
    blocks = -(-(first + src.size) // 4) - first // 4
    key %= COUNTER_LIMIT
    return kernel(ctx.queue, *launch_sizes(ctx, -(-blocks // lanes), None), src=src, dst=dst, n=src.size,
                  first=first, k0=key & 0xFFFFFFFF, k1=key >> 32, layer=layer, step=step & 0xFFFFFFFF,
                  threshold=threshold(rate), scale=dtype.type(1 / (1 - rate)))

