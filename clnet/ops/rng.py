"""Counter-based random numbers: Philox4x32-10, with uniform and normal (Box-Muller) fills.

The number at position i of a fill is a pure function of (seed, counter, i): the same seed
gives the same numbers on every device, for any global or local size. DESIGN.md defines the
stream exactly; kernels/random.cl computes it. clnet's own rather than pyopencl's
PhiloxGenerator: clnet's stream is defined by DESIGN.md (the same on every device and in numpy),
and this kernel ran 3.9x (uniform) and 6.4x (normal) faster here (bench/RESULTS.md).

    g = clnet.Philox(ctx, seed=7)
    g.uniform(a)             # a: float32/float64 device array, filled in place
    g.normal(b, std=0.1)     # continues the stream after a's numbers
    g.counter = 0            # replay from the start
"""

from __future__ import annotations

import numbers

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .arrays import MAX_ELEMENTS, WORK_GROUP, check_array

COUNTER_LIMIT = 2**64
LANES_CPU = 8  # enough work-items to fill a GPU; each loops over its blocks


def _variant(ctx, dtype) -> dict:
    """Kernel params for the device: on CPUs 8-lane vectors (PoCL does not vectorize across
    work-items here) and a 64-bit multiply, several times faster than mul_hi on PoCL; on GPUs
    one block per lane of the hardware, and mul_hi."""
    cpu = ctx.info.type == "CPU"
    # 256-bit vectors: wider ones break PoCL's calls into its builtins on AVX2 (ABI warnings)
    lanes = (8 if np.dtype(dtype) == np.float32 else 4) if cpu else 1
    return {"lanes": lanes, "wide_mulhi": cpu}


def kernel_for(ctx, name: str, dtype="float32") -> tuple[cl.Kernel, int]:
    """The kernel `name` of random.cl for `dtype`, and how many blocks one work-item computes."""
    variant = _variant(ctx, dtype)
    return ctx.kernel("random.cl", name, dtype=dtype, **variant), variant["lanes"]


def launch_sizes(ctx, items: int, local_size: int | None) -> tuple[tuple, tuple]:
    """Global and local size for `items` work-items; any local size gives the same numbers (the
    kernel's own limit lowers it where needed: runtime.kernels.Kernel.work_group)."""
    local = WORK_GROUP if local_size is None else local_size
    if local_size is not None and (isinstance(local, bool) or not isinstance(local, numbers.Integral) or not (
            1 <= local <= ctx.info.max_work_group_size)):
        raise ValueError(f"local_size must be an integer in 1..{ctx.info.max_work_group_size}, got {local_size!r}")
    return (max(1, -(-items // local)) * local,), (int(local),)


def _as_device_uint32(ctx, a, name: str, columns: int) -> cla.Array:
    if isinstance(a, np.ndarray):
        if a.dtype != np.uint32:
            raise TypeError(f"{name} must have dtype uint32, got {a.dtype}")
        a = cla.to_device(ctx.queue, np.ascontiguousarray(a))
    check_array(ctx, a, name, dtype=np.uint32)
    if a.ndim != 2 or a.shape[1] != columns:
        raise ValueError(f"{name} must have shape (n, {columns}), got {tuple(a.shape)}")
    return a


def philox4x32(ctx, counters, keys) -> cla.Array:
    """Philox4x32-10 of each row: `counters` (n, 4) and `keys` (n, 2) uint32 -> (n, 4) uint32.

    The inputs may be numpy or device arrays; the result is a device array. This is the raw
    generator, checked against Random123's known-answer vectors.
    """
    counters = _as_device_uint32(ctx, counters, "counters", 4)
    keys = _as_device_uint32(ctx, keys, "keys", 2)
    n = counters.shape[0]
    if keys.shape[0] != n:
        raise ValueError(f"counters and keys must have the same number of rows, got {n} and {keys.shape[0]}")
    out = cla.empty(ctx.queue, (n, 4), np.uint32)
    if n:
        kernel, _ = kernel_for(ctx, "philox_blocks")
        kernel(ctx.queue, *launch_sizes(ctx, n, None), counters=counters, keys=keys, out=out, n=n)
    return out


def _check_int(value, name: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer in 0..2**64-1, got {value!r}")
    value = int(value)
    if not 0 <= value < limit:
        raise ValueError(f"{name} must be in 0..2**64-1, got {value}")
    return value


def _check_finite(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class Philox:
    """A Philox4x32-10 stream on a device: key = seed, position = `counter` (in 128-bit blocks).

    Each fill of n numbers uses the blocks counter, counter + 1, ... (4 numbers per block for
    raw words and float32, 2 for float64) and then moves `counter` past them, so the next fill
    continues the stream. Setting `counter` replays or skips ahead.
    """

    def __init__(self, ctx, seed: int, counter: int = 0):
        self.ctx = ctx
        self.seed = _check_int(seed, "seed", COUNTER_LIMIT)
        self.key = (np.uint32(self.seed & 0xFFFFFFFF), np.uint32(self.seed >> 32))
        self.counter = counter

    @property
    def counter(self) -> int:
        """The index of the next 128-bit block the stream will use."""
        return self._counter

    @counter.setter
    def counter(self, value: int) -> None:
        self._counter = _check_int(value, "counter", COUNTER_LIMIT)

    def raw(self, a: cla.Array, *, local_size: int | None = None) -> cla.Array:
        """Fill the uint32 device array `a` with raw Philox words; returns `a`."""
        check_array(self.ctx, a, "a", dtype=np.uint32)
        return self._fill("fill_raw", a, "float32", 4, {}, local_size)

    def uniform(self, a: cla.Array, low: float = 0.0, high: float = 1.0, *,
                local_size: int | None = None) -> cla.Array:
        """Fill the float device array `a` with uniform numbers in (low, high); returns `a`.

        Each number is low + (high - low) * u with u in (0, 1), never 0 or 1.
        """
        dtype = self._float_array(a)
        low, high = _check_finite("low", low), _check_finite("high", high)
        if not low < high:
            raise ValueError(f"uniform needs low < high, got low={low}, high={high}")
        return self._fill("fill_uniform", a, dtype, 4 if dtype == np.float32 else 2,
                          {"low": low, "span": high - low}, local_size)

    def normal(self, a: cla.Array, mean: float = 0.0, std: float = 1.0, *,
               local_size: int | None = None) -> cla.Array:
        """Fill the float device array `a` with normal numbers of this mean and std; returns `a`."""
        dtype = self._float_array(a)
        mean, std = _check_finite("mean", mean), _check_finite("std", std)
        if std < 0:
            raise ValueError(f"normal needs std >= 0, got {std}")
        return self._fill("fill_normal", a, dtype, 4 if dtype == np.float32 else 2,
                          {"mean": mean, "std": std}, local_size)

    def _float_array(self, a) -> np.dtype:
        if not isinstance(a, cla.Array):
            raise TypeError(f"a must be a pyopencl.array.Array on the device, got {type(a).__name__}")
        if a.dtype.kind != "f":
            raise TypeError(f"uniform and normal fill float32 or float64 arrays, got {a.dtype.name}")
        dtype = self.ctx.real_dtype(a.dtype)
        check_array(self.ctx, a, "a")
        return dtype

    def _fill(self, name: str, a: cla.Array, dtype, per_block: int, params: dict,
              local_size: int | None) -> cla.Array:
        n = a.size
        blocks = -(-n // per_block)
        if n:
            if n > MAX_ELEMENTS:
                raise ValueError(f"a has {n} elements; a fill takes at most {MAX_ELEMENTS}")
            kernel, lanes = kernel_for(self.ctx, name, dtype)
            kernel(self.ctx.queue, *launch_sizes(self.ctx, -(-blocks // lanes), local_size), a=a, n=n, k0=self.key[0],
                   k1=self.key[1], counter=self._counter, **params)
        self._counter = (self._counter + blocks) % COUNTER_LIMIT
        return a

    def __repr__(self) -> str:
        return f"Philox(seed={self.seed}, counter={self._counter})"
