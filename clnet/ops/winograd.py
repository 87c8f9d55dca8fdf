"""3x3 convolutions of stride 1 by Winograd's F(2x2, 3x3) (kernels/winograd.cl): the filters and the
input's 4x4 patches transformed, 16 products of clnet's GEMM in one launch (one per element of the
transform, 2.25x fewer multiply-adds than the sums), the output transformed back with the bias and the
activation. clnet/ops/conv.py chooses it (`applies`) for the forward pass and for dC/dx (the
transposed convolution, the filters flipped as they are transformed)."""

from __future__ import annotations

import pyopencl.array as cla

from . import activations, blas, tiled_gemm
from .arrays import check_array
from .conv_geometry import Geometry

ELEMENTS = 16  # of the 4x4 transform: one product each
PLANE_ALIGN = 64  # elements: the 16 matrices' starts are multiples, and one more apart than needed
MIN_CHANNELS, MAX_PIXELS, TILE_FILTER_BYTES = 64, 64, 256 << 10  # where F(2x2, 3x3) is chosen (`applies`)


def applies(ctx, dtype, geometry: Geometry, samples: int) -> bool:
    """Whether F(2x2, 3x3) computes this convolution of `samples` images: 3x3 filters, stride and
    dilation 1, one group, where clnet's GEMM runs the products, with at least MIN_CHANNELS channels
    in and out, outputs of at most MAX_PIXELS pixels per image and a tile for every TILE_FILTER_BYTES
    of transformed filters. bench/bench_winograd.py: 1.2-1.95x faster forward and 1.07-1.55x forward
    and backward on 7x7 to 2x2 images of 64-512 channels (batch 16); alike or slower on 14x14 and
    16x16 images, where the transforms' memory traffic outweighs the products saved, and on 512
    channels of 2x2 (16 tiles), where transforming 16 MB of filters does."""
    g, tiles = geometry, _tiles(geometry, samples)
    filter_bytes = ELEMENTS * g.channels * g.out_channels * dtype.itemsize
    return _computes(g) and min(g.channels, g.out_channels) >= MIN_CHANNELS and g.pixels <= MAX_PIXELS \
        and tiles * TILE_FILTER_BYTES >= filter_bytes \
        and blas.settings(ctx, dtype).backend(g.out_channels, tiles, g.channels) == "clnet"


def _computes(g: Geometry) -> bool:
    return (g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.groups) == (3, 3, 1, 1, 1, 1, 1)


def _tiles(geometry: Geometry, samples: int) -> int:
    return samples * -(-geometry.out_h // 2) * -(-geometry.out_w // 2)


def forward(ctx, x: cla.Array, weights: cla.Array, bias: cla.Array | None, out: cla.Array, activation: str,
            alpha: float | None, z: cla.Array | None, geometry: Geometry, flip: bool = False) -> None:
    """out = f(conv(x, weights) + bias), z kept when given; flip: `weights` are (in, out, 3, 3), those
    of the convolution whose transposed one `geometry` is (dC/dx). Its transforms and products in
    the context's scratch buffers (for a chunk of images within conv.WORKSPACE_BYTES: at most about
    4x that, the products being 4x the output). Queued."""
    dtype = ctx.real_dtype(x.dtype)
    g, samples = geometry, x.shape[0]
    if not _computes(g):
        raise ValueError(f"winograd.forward computes 3x3 convolutions of stride 1, dilation 1 and one group, "
                         f"got {g.kh}x{g.kw}, stride ({g.sh}, {g.sw}), dilation ({g.dh}, {g.dw}), groups {g.groups}")
    check_array(ctx, x, "x", dtype=dtype, shape=(samples, g.channels, g.height, g.width))
    check_array(ctx, weights, "weights", dtype=dtype,
                shape=(g.channels, g.out_channels, 3, 3) if flip else (g.out_channels, g.channels, 3, 3))
    check_array(ctx, out, "out", dtype=dtype, shape=(samples, g.out_channels, g.out_h, g.out_w))
    tiles_h, tiles_w = -(-g.out_h // 2), -(-g.out_w // 2)
    tiles = samples * tiles_h * tiles_w
    tile_cols = tiled_gemm.tile_columns(blas.settings(ctx, dtype).tiles, dtype)
    padded = -(-tiles // tile_cols) * tile_cols
    size = dtype.itemsize
    u_plane, v_plane = _plane(g.out_channels * g.channels), _plane(g.channels * padded)
    m_plane = _plane(g.out_channels * tiles)
    u = ctx.scratch("winograd.filters", ELEMENTS * u_plane * size)
    v = ctx.scratch("winograd.patches", ELEMENTS * v_plane * size)
    m = ctx.scratch("winograd.products", ELEMENTS * m_plane * size)
    filters = ctx.kernel("winograd.cl", "winograd_filters", dtype=dtype, flip=flip)
    filters(ctx.queue, (-(-g.out_channels * g.channels // 64) * 64,), (64,), w=weights, u=u,
            out_channels=g.out_channels, channels=g.channels, plane=u_plane)
    patches = ctx.kernel("winograd.cl", "winograd_patches", dtype=dtype, tile_cols=tile_cols)
    patches(ctx.queue, (-(-g.channels * tiles // 64) * 64,), (64,), x=x, v=v, channels=g.channels, height=g.height,
            width=g.width, top=g.ph, left=g.pw, tiles_h=tiles_h, tiles_w=tiles_w, samples=samples, plane=v_plane)
    blas.gemm_packed_b(ctx, cla.Array(ctx.queue, (g.out_channels, g.channels), dtype, data=u),
                       cla.Array(ctx.queue, ELEMENTS * v_plane, dtype, data=v),
                       cla.Array(ctx.queue, (g.out_channels, tiles), dtype, data=m), tiles,
                       batch=(ELEMENTS, u_plane, v_plane, m_plane))
    output = ctx.kernel("winograd.cl", "winograd_output", dtype=dtype, activation=activation, keep_z=z is not None,
                        has_bias=bias is not None)
    output(ctx.queue, (-(-g.out_channels * tiles // 64) * 64,), (64,), m=m, bias=out if bias is None else bias,
           z=out if z is None else z, out=out, out_channels=g.out_channels, out_h=g.out_h, out_w=g.out_w,
           tiles_h=tiles_h, tiles_w=tiles_w, samples=samples, plane=m_plane,
           **activations.alpha_argument(activation, alpha))


def _plane(size: int) -> int:
    """Where the next of the 16 matrices starts: past `size`, a cache line or more off a power of two."""
    return -(-size // PLANE_ALIGN) * PLANE_ALIGN + PLANE_ALIGN
