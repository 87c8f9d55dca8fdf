"""clnet's GEMM for GPUs (kernels/gemm_local.cl): tiles of A and B staged in local memory by 2-D
work-groups, a few-by-few register tile per work-item. What a GPU runs when CLBlast is absent
(pyclblast has no wheels) or slower; blas.gemm and dense.forward call it for the backend
"clnet_gpu". CPUs keep tiled_gemm's register tiles, which this kernel does not beat there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyopencl.array as cla

from . import activations
from .tiled_gemm import Epilogue


@dataclass(frozen=True)
class LocalTiles:
    """tm x tn: a work-group's tile of C, stepping tk over k; wm x wn: a work-item's. The
    work-group has (tn / wn) x (tm / wm) work-items."""

    tm: int = 64
    tn: int = 64
    tk: int = 16
    wm: int = 4
    wn: int = 4

    @property
    def items(self) -> int:
        return (self.tm // self.wm) * (self.tn // self.wn)

    def as_dict(self) -> dict:
        return {"tm": self.tm, "tn": self.tn, "tk": self.tk, "wm": self.wm, "wn": self.wn}

    def check(self) -> LocalTiles:
        """self, or ValueError when the tiles do not divide as the kernel needs."""
        values = self.as_dict()
        if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 128 for v in values.values()) or \
                self.tm % self.wm or self.tn % self.wn or self.tm % 4 or self.tn % 4 or self.tk % 4 or \
                self.wm * self.wn > 64:
            raise ValueError(f"local GEMM tiles {values}: need whole numbers from 1 to 128 with wm | tm, wn | tn, "
                             f"tm, tn and tk multiples of 4 (the kernel loads vectors of 4), and wm * wn <= 64")
        return self


# By preference: 64 x 64 tiles load 0.0625 bytes per float32 flop, 64 x 32 0.094, 32 x 32 0.125;
# 256 work-items where the kernel may have them, else more accumulators per work-item.
CANDIDATES = (LocalTiles(64, 64, 16, 4, 4), LocalTiles(64, 64, 16, 8, 8), LocalTiles(64, 32, 16, 8, 8),
              LocalTiles(32, 32, 16, 4, 4), LocalTiles(32, 16, 16, 4, 4), LocalTiles(16, 16, 16, 4, 4))


def _template(dtype, tiles: LocalTiles, trans_a: bool, trans_b: bool, epilogue: Epilogue | None) -> dict:
    return {"dtype": dtype, **tiles.as_dict(), "trans_a": trans_a, "trans_b": trans_b,
            "epilogue": epilogue and epilogue.activation, "keep_z": bool(epilogue and epilogue.z is not None)}


def fits(ctx, dtype, tiles: LocalTiles) -> bool:
    """Whether the kernel built with these tiles runs its work-group on this device: its own
    limit (CL_KERNEL_WORK_GROUP_SIZE; registers and local memory lower it) and the device's."""
    kernel = ctx.kernel("gemm_local.cl", "gemm_local", **_template(dtype, tiles, False, True, None))
    most, per_dimension = kernel.limits(ctx.queue.device)
    local_bytes = (tiles.tk * (tiles.tm + 1) + tiles.tk * (tiles.tn + 1)) * np.dtype(dtype).itemsize
    return tiles.items <= most and tiles.tn // tiles.wn <= per_dimension[0] and \
        tiles.tm // tiles.wm <= per_dimension[1] and local_bytes <= ctx.info.local_mem_bytes


def default_tiles(ctx, dtype) -> LocalTiles:
    """The first of CANDIDATES that this device runs (`fits`) with a work-group a multiple of the
    kernel's preferred multiple (CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE: the warp or the
    wavefront, so that no lane idles), else the first that it runs; ValueError naming the limit
    when none does."""
    fitting = [tiles for tiles in CANDIDATES if fits(ctx, dtype, tiles)]
    for tiles in fitting:
        kernel = ctx.kernel("gemm_local.cl", "gemm_local", **_template(dtype, tiles, False, True, None))
        if tiles.items % kernel.preferred_multiple(ctx.device) == 0:
            return tiles
    if fitting:
        return fitting[0]
    raise ValueError(f"no local GEMM tile fits {ctx.info.name}'s work-group limit "
                     f"({ctx.info.max_work_group_size}); the smallest needs {CANDIDATES[-1].items} work-items")


def gemm(ctx, a: cla.Array, b: cla.Array, c: cla.Array, *, m: int, n: int, k: int, trans_a: bool, trans_b: bool,
         layouts: tuple[tuple[int, int], ...], alpha, beta, tiles: LocalTiles,
         epilogue: Epilogue | None = None) -> None:
    """The product for already checked arrays (layouts: (leading dimension, offset) of a, b, c).
    With an epilogue (not transposed, not softmax), c = f(a @ b + bias) with alpha 1, beta 0."""
    if epilogue is not None and (epilogue.transposed or epilogue.activation in activations.ROWWISE):
        raise ValueError(f"the local GEMM's epilogue takes elementwise activations by column, got "
                         f"{epilogue.activation!r}{' transposed' if epilogue.transposed else ''}")
    (lda, _), (ldb, _), (ldc, _) = layouts  # the offsets go with the arrays
    kernel = ctx.kernel("gemm_local.cl", "gemm_local", **_template(c.dtype, tiles, trans_a, trans_b, epilogue))
    lx, ly = tiles.tn // tiles.wn, tiles.tm // tiles.wm
    extra = {} if epilogue is None else {"bias": epilogue.bias, "z": c if epilogue.z is None else epilogue.z,
                                         **activations.alpha_argument(epilogue.activation, epilogue.alpha)}
    # the kernel needs its whole work-group: Kernel.work_group would halve a size above the limit,
    # so a tile that does not fit is refused here, by name
    if kernel.work_group(ctx.device, (lx, ly)) != (lx, ly):
        most, per_dimension = kernel.limits(ctx.device)
        raise ValueError(f"local GEMM tiles {tiles.as_dict()} need work-groups of {lx} x {ly}; this kernel runs "
                         f"at most {most} work-items ({per_dimension[:2]} per dimension) on {ctx.info.name}")
    kernel(ctx.queue, (-(-n // tiles.tn) * lx, -(-m // tiles.tm) * ly), (lx, ly), m=m, n=n, k_count=k, a=a,
           lda=lda, b=b, ldb=ldb, c=c, ldc=ldc, alpha=alpha, beta=beta, **extra)
