"""Matrix products on row-major pyopencl arrays: CLBlast (through pyclblast), clnet's own
register-tiled kernel for CPUs ("clnet", ops/tiled_gemm.py) or its local-memory kernel for GPUs
("clnet_gpu", ops/local_gemm.py), whichever the device's settings choose.

Shapes, transposes, leading dimensions and offsets all come from the arrays themselves:
pyclblast takes an array's buffer but ignores its offset, so the offset is passed explicitly.
Without a tuning result (clnet.tuning), CPU devices use clnet's kernel and GPUs use CLBlast.
CLBlast is optional (pip install 'clnet[clblast]'): without pyclblast GPUs (and accelerators)
use clnet_gpu, CPUs clnet.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re
from dataclasses import dataclass, field

import numpy as np
import pyopencl.array as cla

try:
    import pyclblast
except ImportError:  # CLBlast is an extra: clnet's own GEMM runs everywhere
    pyclblast = None

from ..runtime.log import logger
from ..runtime.paths import cache_dir
from . import local_gemm, tiled_gemm

BACKENDS = ("clblast", "clnet", "clnet_gpu")
HAVE_CLBLAST = pyclblast is not None
NO_CLBLAST = "CLBlast is not installed (pip install 'clnet[clblast]', which needs the CLBlast library)"
SMALL_PRODUCT = 2**27  # m * n * k below this is the "small" shape class
_announced: set[tuple] = set()


@dataclass
class GemmSettings:
    """Which backend runs small and large products on a device, and clnet's tile parameters:
    `tiles` for the CPU kernel, `local` for the GPU kernel (None: chosen on first use)."""

    small: str
    large: str
    tiles: tiled_gemm.TileParams = field(default_factory=tiled_gemm.TileParams)
    tuned: bool = False
    local: local_gemm.LocalTiles | None = None

    def backend(self, m: int, n: int, k: int) -> str:
        return self.small if m * n * k < SMALL_PRODUCT else self.large


def settings_key(ctx, dtype) -> tuple:
    """What the GEMMs of a recorded plan depend on: the backends and tiles now in force."""
    chosen = settings(ctx, dtype)
    return chosen.small, chosen.large, chosen.tiles, chosen.local


@functools.cache  # called once per pass of every training step; np.dtype(...).name takes microseconds
def _settings_key(dtype) -> tuple[str, str]:
    return "gemm", np.dtype(dtype).name


def settings(ctx, dtype) -> GemmSettings:
    """The GEMM settings of this context for dtype: the tuned ones, else the defaults."""
    key = _settings_key(dtype)
    found = ctx.settings.get(key)
    if found is None:
        backend = "clnet" if ctx.info.type == "CPU" else "clblast" if HAVE_CLBLAST else "clnet_gpu"
        found = ctx.settings[key] = GemmSettings(backend, backend, tiled_gemm.default_tiles(ctx.info, dtype))
    return found


def local_tiles(ctx, dtype) -> local_gemm.LocalTiles:
    """The GPU kernel's tiles on this device: the tuned ones, else the first that fits its limits."""
    chosen = settings(ctx, dtype)
    if chosen.local is None:
        chosen.local = local_gemm.default_tiles(ctx, np.dtype(dtype))
    return chosen.local


def _clblast_library() -> ctypes.CDLL | None:
    # pyclblast has no binding for CLBlastClearCache; it links CLBlast dynamically, so this is
    # the same library, with the same cache.
    name = ctypes.util.find_library("clblast")
    try:
        return ctypes.CDLL(name or "libclblast.so.1")
    except OSError:
        return None


def clear_clblast_cache() -> None:
    """Release CLBlast's compiled programs and its parameter cache (CLBlastClearCache).

    CLBlast keeps one cache for all contexts; it rebuilds what other contexts need on their
    next call (from the driver's binary cache, quickly)."""
    library = _clblast_library()
    if library is not None:
        library.CLBlastClearCache()


def layout(a: cla.Array, name: str) -> tuple[int, int]:
    """(leading dimension, offset) in elements of a row-major 2-D array or view."""
    item = a.dtype.itemsize
    rows, cols = a.shape
    row_stride, col_stride = a.strides
    if cols > 1 and col_stride != item or row_stride % item or (rows > 1 and row_stride < cols * item):
        raise ValueError(f"{name} must be row-major with contiguous rows, got shape {tuple(a.shape)} "
                         f"and strides {tuple(a.strides)}")
    ld = row_stride // item if rows > 1 else max(cols, 1)
    return max(ld, cols, 1), a.offset // item


def check_product(ctx, arrays: dict[str, cla.Array]) -> np.dtype:
    first = next(iter(arrays.values()))
    if not isinstance(first, cla.Array):
        raise TypeError(f"a must be a pyopencl.array.Array on the device, got {type(first).__name__}")
    dtype = ctx.real_dtype(first.dtype)
    for name, array in arrays.items():
        if not isinstance(array, cla.Array):
            raise TypeError(f"{name} must be a pyopencl.array.Array on the device, got {type(array).__name__}")
        if array.dtype != dtype:
            shapes = ", ".join(f"{n} {a.dtype.name}{tuple(a.shape)}" for n, a in arrays.items())
            raise TypeError(f"gemm needs one dtype for all arrays, got {shapes}")
        if array.ndim != 2:
            raise ValueError(f"gemm takes 2-D arrays, got {name} of shape {tuple(array.shape)}")
        if array.context != ctx.context:
            raise ValueError(f"{name} belongs to another OpenCL context than this clnet.Context's")
    return dtype


def gemm(ctx, a: cla.Array, b: cla.Array, c: cla.Array, *, trans_a: bool = False, trans_b: bool = False,
         alpha: float = 1.0, beta: float = 0.0, backend: str | None = None) -> None:
    """c = alpha * op(a) @ op(b) + beta * c, op(x) = x.T when trans_x; queued, not waited on.

    All three are 2-D row-major device arrays of one dtype (views with offsets and row strides
    are fine). op(a) is (m, k), op(b) is (k, n) and c is (m, n). backend: "clblast", "clnet",
    "clnet_gpu", or None for the device's settings (see `settings`).
    """
    dtype = check_product(ctx, {"a": a, "b": b, "c": c})
    m, k = a.shape[::-1] if trans_a else a.shape
    k_b, n = b.shape[::-1] if trans_b else b.shape
    if k != k_b or c.shape != (m, n):
        op_a = f"a.T {tuple(a.shape[::-1])}" if trans_a else f"a {tuple(a.shape)}"
        op_b = f"b.T {tuple(b.shape[::-1])}" if trans_b else f"b {tuple(b.shape)}"
        raise ValueError(f"gemm shapes do not fit: {op_a} @ {op_b} -> c {tuple(c.shape)}; "
                         f"needs op(a) (m, k), op(b) (k, n), c (m, n)")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown GEMM backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "clblast" and not HAVE_CLBLAST:
        raise RuntimeError(f"GEMM backend 'clblast' asked for, but {NO_CLBLAST}")
    layouts = (layout(a, "a"), layout(b, "b"), layout(c, "c"))
    if m == 0 or n == 0:
        return
    if k == 0:  # the product is empty, so c = beta * c
        ctx.not_recordable()
        c *= dtype.type(beta)
        return
    chosen = settings(ctx, dtype)
    backend = backend or chosen.backend(m, n, k)
    if backend == "clnet":
        tiled_gemm.gemm(ctx, a, b, c, m=m, n=n, k=k, trans_a=trans_a, trans_b=trans_b, layouts=layouts,
                        alpha=dtype.type(alpha), beta=dtype.type(beta), params=chosen.tiles)
    elif backend == "clnet_gpu":
        local_gemm.gemm(ctx, a, b, c, m=m, n=n, k=k, trans_a=trans_a, trans_b=trans_b, layouts=layouts,
                        alpha=dtype.type(alpha), beta=dtype.type(beta), tiles=local_tiles(ctx, dtype))
    else:
        _clblast_gemm(ctx, a, b, c, m, n, k, trans_a, trans_b, layouts, dtype.type(alpha), dtype.type(beta))


def gemm_packed_b(ctx, a: cla.Array, packed_b: cla.Array, c: cla.Array, n: int, beta: float = 0.0,
                  batch: tuple[int, int, int, int] | None = None) -> None:
    """c (m, n) = a (m, k) @ B (+ beta * c) with clnet's kernel, B (k, n) given already packed
    (tiled_gemm.tile_columns(settings(ctx, dtype).tiles, dtype)-column panels, k by k: what a
    producer such as conv.im2col_packed writes, saving the packing pass). batch: (count, a_stride,
    b_stride, c_stride): `count` such products in one launch, product p's a, B and c p strides
    (elements) after these (their buffers must hold them). Queued."""
    dtype = check_product(ctx, {"a": a, "c": c})
    m, k = a.shape
    if c.shape != (m, n):
        raise ValueError(f"gemm_packed_b: a {tuple(a.shape)} @ B (k, {n}) -> c {tuple(c.shape)} do not fit")
    chosen = settings(ctx, dtype)
    columns = tiled_gemm.tile_columns(chosen.tiles, dtype)
    count, a_stride, b_stride, c_stride = batch or (1, 0, 0, 0)
    if count < 1 or min(a_stride, b_stride, c_stride) < 0:
        raise ValueError(f"gemm_packed_b: batch (count, a_stride, b_stride, c_stride) needs a count of at least 1 "
                         f"and strides of 0 or more, got {batch}")
    if packed_b.size < (count - 1) * b_stride + -(-n // columns) * columns * k:
        raise ValueError(f"gemm_packed_b: packed B holds {packed_b.size} elements, {count} ({k}, {n}) B need "
                         f"{(count - 1) * b_stride + -(-n // columns) * columns * k}")
    for name, x, stride in (("a", a, a_stride), ("c", c, c_stride)):
        last = x.offset // dtype.itemsize + (count - 1) * stride + (x.shape[0] - 1) * layout(x, name)[0] + x.shape[1]
        if last * dtype.itemsize > x.base_data.size:
            raise ValueError(f"gemm_packed_b: the batch's last {name} ends at element {last}, past its buffer "
                             f"of {x.base_data.size // dtype.itemsize}")
    tiled_gemm.gemm(ctx, a, packed_b, c, m=m, n=n, k=k, trans_a=False, trans_b=False,
                    layouts=(layout(a, "a"), (n, 0), layout(c, "c")), alpha=dtype.type(1), beta=dtype.type(beta),
                    params=chosen.tiles, b_packed=True, batch=batch)


def _clblast_gemm(ctx, a, b, c, m, n, k, trans_a, trans_b, layouts, alpha, beta) -> None:
    (a_ld, a_off), (b_ld, b_off), (c_ld, c_off) = layouts
    ctx.on_close("clblast", clear_clblast_cache)
    first = _first_call_notice(ctx, c.dtype)

    def queue_product() -> None:  # the same product on the same buffers each call: a plan replays it
        try:
            pyclblast.gemm(ctx.queue, m, n, k, a, b, c, a_ld=a_ld, b_ld=b_ld, c_ld=c_ld, alpha=alpha, beta=beta,
                           a_transp=trans_a, b_transp=trans_b, a_offset=a_off, b_offset=b_off, c_offset=c_off)
        except RuntimeError as exc:
            raise RuntimeError(f"CLBlast GEMM failed for op(a) ({m}, {k}) @ op(b) ({k}, {n}) "
                               f"on {ctx.info.name!r}: {exc}") from exc

    ctx.foreign(queue_product)
    if first is not None:
        first.write_text("built\n")


def _first_call_notice(ctx, dtype: np.dtype):
    """Before the first GEMM of a device and dtype on this machine, say that CLBlast compiles.

    CLBlast compiles inside the call while holding the GIL, so nothing can report during it:
    say it before, the first time (a marker file remembers it). Returns the marker to write."""
    key = (ctx.info.name, ctx.info.driver_version, dtype.name)
    if key in _announced:
        return None
    _announced.add(key)
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", "-".join(key))
    marker = cache_dir() / "clblast-built" / f"{slug}.txt"
    if marker.exists():
        return None
    marker.parent.mkdir(parents=True, exist_ok=True)
    logger.info("compiling CLBlast's %s GEMM kernels for %s (about 20 s on PoCL); this happens once, "
                "the driver caches them", dtype.name, ctx.info.name)
    return marker

