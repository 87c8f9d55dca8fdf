"""clnet's own GEMM (kernels/gemm.cl): register tiles for CPU devices, where CLBlast has no
tuned parameters and ran at 10-20 GFLOP/s against numpy's 200 (bench/RESULTS.md).

C = alpha * op(A) @ op(B) + beta * C: pack op(B) into column panels (and A.T into row panels),
then one work-item per tile of C. blas.gemm decides when to use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyopencl.array as cla

from . import activations
from .arrays import vector_width

SCRATCH = "tiled_gemm.packed_b"
SCRATCH_A = "tiled_gemm.packed_a"
SCRATCH_PARTS = "tiled_gemm.parts"


@dataclass(frozen=True)
class Epilogue:
    """A fused forward pass: c = f(op(A) @ op(B) + bias), with the pre-activation kept in z
    when z is given (the output layer keeps its logits); softmax needs n <= the tile's columns."""

    bias: cla.Array
    activation: str
    z: cla.Array | None = None
    transposed: bool = False  # the product is out.T = W @ x.T: the bias goes by row, C is stored as C.T
    alpha: float | None = None  # the activation's parameter (leaky_relu, elu)


@dataclass(frozen=True)
class TileParams:
    """rows: tile rows (accumulators = 2 * rows vectors); local: work-items per work-group;
    width: elements per vector (None: the elementwise kernels' 256 bits, 8 float32 or 4 float64)."""

    rows: int = 6
    local: int = 16
    width: int | None = None

    def as_dict(self) -> dict:
        return {"rows": self.rows, "local": self.local, "width": self.width}

    def check(self) -> TileParams:
        """self, or ValueError naming what the kernel cannot take (a tuning file may hold anything)."""
        def whole(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not (whole(self.rows) and 1 <= self.rows <= 16 and whole(self.local) and 1 <= self.local <= 1024
                and self.local & (self.local - 1) == 0 and (self.width is None or self.width in (2, 4, 8, 16))):
            raise ValueError(f"clnet GEMM tiles {self.as_dict()}: need rows from 1 to 16, local a power of two up "
                             "to 1024, and width None or an OpenCL vector width (2, 4, 8, 16)")
        return self


def default_tiles(info, dtype) -> TileParams:
    """Untuned tiles for a device: 512-bit vectors of 12 rows where the device's native vectors
    are that wide (AVX-512's 32 registers hold the 24 accumulators; 1.1-1.4x the 4-row tiles on
    the seed network's products, bench/RESULTS.md), else 256-bit vectors of 6 rows."""
    native = info.native_width(dtype)
    wide = 16 if np.dtype(dtype) == np.float32 else 8
    return TileParams(12, 16, wide) if info.type == "CPU" and native >= wide else TileParams()


# op(B) = B and op(A) = A.T are read in place (no packing launch) when their rows are at most
# this many bytes apart: then consecutive steps over k share 4 KiB pages and the prefetcher
# follows them. Wider, packing won on every training shape measured (bench/RESULTS.md): e.g.
# B 256 x 784: 1.84 ms packed, 2.28 in place; B 256 x 512: 0.18 packed, 0.12 in place.
IN_PLACE_STRIDE = 2048

# The packing kernels run in work-groups of this many steps over k of one panel, whatever the
# shape: PoCL compiles a kernel anew for each work-group size it meets (seconds for pack_b_t),
# and left to choose, it picked a new size for nearly every shape.
PACK_GROUP = 16


def pack_sizes(panels: int, steps: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Global and local size of a packing launch over panels x steps (the kernels skip the
    steps past the end)."""
    return (panels, -(-steps // PACK_GROUP) * PACK_GROUP), (1, PACK_GROUP)


# Split k (k_parts) where the output has few tiles: each part of k is a work-group of its own,
# so that every core has work (bench/RESULTS.md: 25 x 6 x 50176, LeNet's first filter gradient,
# 1.35x faster in 13 parts; 288 x 32 x 8192, 96 tiles, slower in any). Parts of at least
# PART_MIN_STEPS steps, so that adding the parts costs little beside the product.
GROUPS_PER_UNIT = 32
PART_MIN_STEPS = 512


def k_parts(m: int, n: int, k: int, params: TileParams, dtype, compute_units: int) -> int:
    """Into how many parts the product's k is cut (1: not cut): about GROUPS_PER_UNIT tiles per
    compute unit in all."""
    tiles = -(-m // params.rows) * -(-n // (2 * (params.width or vector_width(dtype))))
    return max(1, min(-(-GROUPS_PER_UNIT * compute_units // tiles), k // PART_MIN_STEPS))


def group_size(ctx, params: TileParams, row_tiles: int) -> int:
    """Work-items per group along the row tiles: params.local, less where the rows are few, so that
    every core has some."""
    local = min(params.local, ctx.info.max_work_group_size)
    while local > 1 and row_tiles < 2 * local:
        local //= 2
    return local


def tile_columns(params: TileParams, dtype) -> int:
    """The columns of a tile, and of a panel of packed B (pack_b's layout)."""
    return 2 * (params.width or vector_width(dtype))


def gemm(ctx, a: cla.Array, b: cla.Array, c: cla.Array, *, m: int, n: int, k: int, trans_a: bool, trans_b: bool,
         layouts: tuple[tuple[int, int], ...], alpha: float, beta: float, params: TileParams,
         epilogue: Epilogue | None = None, b_packed: bool = False, parts: int | None = None,
         batch: tuple[int, int, int, int] | None = None) -> None:
    """The product for already checked arrays; layouts are (leading dimension, offset) of a, b, c.
    With an epilogue, c = f(a @ b + bias) (alpha 1, beta 0). b_packed: b is op(B) already laid
    out as pack_b lays it out (panels of tile_columns, k by k, zeros past n; its layout unused).
    parts: into how many parts k is cut (None: k_parts; never with an epilogue), each part's product
    written to a scratch buffer and then summed in a fixed order into c (kernels/split_k.cl).
    batch: (count, a_stride, b_stride, c_stride): `count` products in one launch, product p's matrices
    p strides (elements) after a's, b's and c's (b packed, no epilogue, k not cut)."""
    dtype = c.dtype
    width = params.width or vector_width(dtype)
    tile_cols = 2 * width
    (lda, _), (ldb, _), (ldc, _) = layouts  # the offsets go with the arrays
    packed_b = b_packed or trans_b or ldb * dtype.itemsize > IN_PLACE_STRIDE
    a_layout = ("packed" if lda * dtype.itemsize > IN_PLACE_STRIDE else "columns") if trans_a else "rows"
    shape = {"dtype": dtype, "rows": params.rows, "width": width}  # the packing kernels' params
    template = {**shape, "a_layout": a_layout, "packed_b": packed_b, "epilogue": epilogue and epilogue.activation,
                "keep_z": bool(epilogue and epilogue.z is not None),
                "c_transposed": bool(epilogue and epilogue.transposed)}
    panels = -(-n // tile_cols)
    if packed_b and not b_packed:
        packed = ctx.scratch(SCRATCH, panels * tile_cols * k * dtype.itemsize)
        if trans_b:
            pack = ctx.kernel("pack.cl", "pack_b_t", **shape)
            pack(ctx.queue, *pack_sizes(panels, -(-k // width)), b=b, ldb=ldb, k_count=k, n=n, packed=packed,
                 block=k, block_stride=0)
        else:
            pack = ctx.kernel("pack.cl", "pack_b", **shape)
            pack(ctx.queue, *pack_sizes(panels, k), b=b, ldb=ldb, k_count=k, n=n, packed=packed)
        b = packed
    row_tiles = -(-m // params.rows)
    if a_layout == "packed":  # in place, op(A) = A.T would cost a new page per step over k: pack it
        packed_a = ctx.scratch(SCRATCH_A, row_tiles * params.rows * k * dtype.itemsize)
        pack_a = ctx.kernel("pack.cl", "pack_a", **shape)
        pack_a(ctx.queue, *pack_sizes(row_tiles, k), a=a, a_i=1, a_k=lda, m=m, k_count=k, packed=packed_a)
        a = packed_a
    local = group_size(ctx, params, row_tiles)
    parts = 1 if epilogue is not None or batch else parts or k_parts(m, n, k, params, dtype, ctx.info.compute_units)
    tile = ctx.kernel("gemm.cl", "gemm_tile", **template, split_k=parts > 1, batched=batch is not None)
    extra = {} if epilogue is None else {"bias": epilogue.bias, "z": c if epilogue.z is None else epilogue.z,
                                         **activations.alpha_argument(epilogue.activation, epilogue.alpha)}
    if parts == 1:
        sizes, group = (-(-row_tiles // local) * local, panels), (local, 1)
        if batch is not None:  # dimension 2: the products of the batch
            sizes, group = (*sizes, batch[0]), (local, 1, 1)
            extra = {**extra, **dict(zip(("a_stride", "b_stride", "c_stride"), batch[1:]))}
        tile(ctx.queue, sizes, group, m=m, n=n, k_count=k, a=a, lda=lda, b=b, ldb=ldb, c=c, ldc=ldc, alpha=alpha,
             beta=beta, **extra)
        return
    part = -(-k // parts)
    parts = -(-k // part)  # every part has steps
    products = ctx.scratch(SCRATCH_PARTS, parts * m * n * dtype.itemsize)
    tile(ctx.queue, (-(-row_tiles // local) * local, panels, parts), (local, 1, 1), m=m, n=n, k_count=k, a=a,
         lda=lda, b=b, ldb=ldb, c=products, ldc=n, alpha=dtype.type(1), beta=dtype.type(0), k_part=part)
    add = ctx.kernel("split_k.cl", "sum_parts", dtype=dtype)
    add(ctx.queue, (-(-m * n // 64) * 64,), (64,), parts=products, c=c, m=m, n=n, ldc=ldc, count=parts,
        alpha=alpha, beta=beta)
