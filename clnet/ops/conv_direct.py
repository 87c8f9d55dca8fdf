"""conv_direct (kernels/conv_direct.cl): a stride-1 convolution computed from zero-padded images
with the GEMM's register tile, on devices whose products run on clnet's GEMM (CPUs), and the
filters' gradient read from the same padded images. No column matrix: clnet/ops/conv.py decides
when these run (`direct`) and falls back to im2col and a GEMM."""

from __future__ import annotations

import pyopencl.array as cla

from . import activations, blas, tiled_gemm
from .arrays import check_array, vector_width
from .conv_geometry import Geometry, flat, padded_size

FIXED_KW = 7  # filters up to this wide get conv_direct's row loop unrolled (a build per width)
TRANSPOSE_BLOCK = 16  # the squares transpose_into works in (BLOCK in conv.cl)


def direct(ctx, dtype, geometry: Geometry) -> bool:
    """Whether conv_direct computes this convolution: stride 1 where clnet's GEMM would run the
    product (its register tile on CPUs; GPUs with CLBlast keep im2col and CLBlast), on output rows
    that fill at least 5/8 of its tile (2 vectors): LeNet's rows of 10 of 16 ran 3.7x faster direct
    than by im2col (0.74 against 2.7 ms), resnet18's of 8 to 2 (on 64x64 images) slower."""
    columns, per_out, per_row = geometry.pixels, geometry.out_channels // geometry.groups, \
        geometry.rows // geometry.groups
    return (geometry.sh, geometry.sw) == (1, 1) and 8 * geometry.out_w >= 5 * 2 * tiles(ctx, dtype)["width"] \
        and blas.settings(ctx, dtype).backend(per_out, columns * 64, per_row) == "clnet"


def flat_where_faster(ctx, dtype, geometry: Geometry) -> Geometry:
    """flat(geometry) where that has a 1x1 convolution whose rows are too short for conv_direct run
    direct on images read in place (8x8 images: 1.5-1.8x faster than im2col and a GEMM); else the
    geometry as it is (flat, 16x16 images ran 8% slower, and 7x7 ones, copied, slower than im2col)."""
    as_one_row = flat(geometry)
    if as_one_row is geometry or direct(ctx, dtype, geometry) or not direct(ctx, dtype, as_one_row) \
            or not in_place(ctx, dtype, as_one_row):
        return geometry
    return as_one_row


def one_row(a: cla.Array | None) -> cla.Array | None:
    """Images (samples, channels, h, w) as flat's geometry sees them: (samples, channels, 1, h * w)."""
    return None if a is None else a.reshape(a.shape[0], a.shape[1], 1, -1)


def direct_filter_gradients(ctx, dtype, geometry: Geometry) -> bool:
    """Whether the filters' gradient is computed from the padded images (`filter_gradients`), not
    from a column matrix: where the forward pass is conv_direct (so there is no column matrix to
    keep) and the convolution has one group."""
    return geometry.groups == 1 and direct(ctx, dtype, geometry)


def filter_gradients(ctx, images: cla.Array, delta: cla.Array, grad_weights: cla.Array, geometry: Geometry,
                     accumulate: bool) -> None:
    """grad_weights (+)= dz @ cols.T, dz the chunk's delta = dC/dz (samples, out, out_h, out_w) and
    the column matrix cols read in place from `images`, the chunk's images as `pad` lays them out
    (kernels/conv_direct.cl's filter_gradient); delta packed first, straight from its NCHW layout
    (pack_b_t by blocks of an image's pixels), k (the chunk's output lines) cut into parts as
    clnet's GEMM cuts it. Queued."""
    dtype = ctx.real_dtype(delta.dtype)
    gemm_tiles = blas.settings(ctx, dtype).tiles
    shape = tiles(ctx, dtype)
    out, rows, pixels = geometry.out_channels, geometry.rows, geometry.pixels
    columns = delta.shape[0] * pixels
    tile_cols = 2 * shape["width"]
    panels, row_tiles = -(-out // tile_cols), -(-rows // shape["rows"])
    packed = ctx.scratch("conv.packed_dz", panels * tile_cols * columns * dtype.itemsize)
    pack = ctx.kernel("pack.cl", "pack_b_t", **shape)
    pack(ctx.queue, *tiled_gemm.pack_sizes(panels, -(-columns // shape["width"])), b=delta, ldb=pixels,
         k_count=columns, n=out, packed=packed, block=pixels, block_stride=out * pixels)
    lines = columns // geometry.out_w
    parts = tiled_gemm.k_parts(rows, out, columns, gemm_tiles, dtype, ctx.info.compute_units)
    part_lines = -(-lines // parts)
    parts = -(-lines // part_lines)
    sums = ctx.scratch("conv.filter_parts", parts * rows * out * dtype.itemsize)
    local = tiled_gemm.group_size(ctx, gemm_tiles, row_tiles)
    padded_h, padded_w = padded_size(geometry, tile_cols)
    kernel = ctx.kernel("conv_direct.cl", "filter_gradient", **shape)
    kernel(ctx.queue, (-(-row_tiles // local) * local, panels, parts), (local, 1, 1), x=images, dz=packed,
           parts=sums, rows=rows, out_channels=out, channels=geometry.channels, padded_h=padded_h,
           padded_w=padded_w, kh=geometry.kh, kw=geometry.kw, dh=geometry.dh, dw=geometry.dw, out_h=geometry.out_h,
           out_w=geometry.out_w, lines=lines, part_lines=part_lines)
    blocks = -(-out // TRANSPOSE_BLOCK) * -(-rows // TRANSPOSE_BLOCK)
    transpose = ctx.kernel("conv.cl", "transpose_into", dtype=dtype)
    transpose(ctx.queue, (-(-blocks // 64) * 64,), (64,), src=sums, dst=grad_weights.reshape(out, rows), rows=out,
              cols=rows, accumulate=int(accumulate), parts=parts)


def padded_images(ctx, padded: cla.Array, samples: int, geometry: Geometry) -> tuple[cla.Array, int, int]:
    """The front of the flat `padded` that holds samples padded images (padded_size), and their
    padded height and width."""
    padded_h, padded_w = padded_size(geometry, 2 * tiles(ctx, ctx.real_dtype(padded.dtype))["width"])
    return padded[:samples * geometry.channels * padded_h * padded_w], padded_h, padded_w


def in_place(ctx, dtype, geometry: Geometry) -> bool:
    """Whether the images are their own padded layout (no padding, rows of whole tiles and the
    filter's reach): conv_direct reads them where they are."""
    tile_cols = 2 * tiles(ctx, dtype)["width"]
    return (geometry.ph, geometry.pw) == (0, 0) and padded_size(geometry, tile_cols) == (geometry.height,
                                                                                       geometry.width)


def images(ctx, x: cla.Array, padded: cla.Array, geometry: Geometry, kept: bool) -> cla.Array:
    """x's padded images for the filters' gradient: those the forward pass left in `padded` when
    kept (the same chunk), else made again (or x itself: in_place)."""
    if kept and not in_place(ctx, ctx.real_dtype(x.dtype), geometry):
        return padded_images(ctx, padded, x.shape[0], geometry)[0]
    return pad(ctx, x, padded, geometry)


def pad(ctx, x: cla.Array, padded: cla.Array, geometry: Geometry) -> cla.Array:
    """The images x zero-padded (padded_size) into the front of the flat `padded`; returns that part
    (x itself where it is its own padded layout: in_place)."""
    dtype = ctx.real_dtype(x.dtype)
    if in_place(ctx, dtype, geometry):
        return x
    images, padded_h, padded_w = padded_images(ctx, padded, x.shape[0], geometry)
    planes = x.shape[0] * geometry.channels
    kernel = ctx.kernel("conv_direct.cl", "pad_images", **tiles(ctx, dtype))
    kernel(ctx.queue, (-(-planes * padded_h // 8) * 8,), (8,), x=x, padded=images, planes=planes,
           height=geometry.height, width=geometry.width, top=geometry.ph, left=geometry.pw, padded_h=padded_h,
           padded_w=padded_w)
    return images


def forward(ctx, x, weights, bias, out, activation, alpha, z, padded, geometry: Geometry, flip: bool = False) -> None:
    """out = f(conv(x) + bias) (z kept when given) by conv_direct, x padded into the flat `padded`
    (or read in place), the filters packed per tile of output channels; flip: `weights` are those
    of the convolution whose transposed one `geometry` is (conv.flip_weights' flipping done in the
    packing). Queued."""
    dtype = ctx.real_dtype(x.dtype)
    samples = x.shape[0]
    padded_h, padded_w = padded_size(geometry, 2 * tiles(ctx, dtype)["width"])
    images = pad(ctx, x, padded, geometry)
    shape = tiles(ctx, dtype)
    out_g, k_count = geometry.out_channels // geometry.groups, geometry.rows // geometry.groups
    channel_tiles = geometry.groups * -(-out_g // shape["rows"])
    filters = cla.Array(ctx.queue, channel_tiles * shape["rows"] * k_count, dtype, data=ctx.scratch(
        "conv.filters", channel_tiles * shape["rows"] * k_count * dtype.itemsize))
    pack = ctx.kernel("conv_direct.cl", "pack_filters", **shape, flip=flip)
    pack(ctx.queue, (-(-channel_tiles * k_count // 64) * 64,), (64,), w=weights, packed=filters, out_g=out_g,
         groups=geometry.groups, k_count=k_count, field=geometry.kh * geometry.kw)
    kernel = ctx.kernel("conv_direct.cl", "conv_direct", **shape, activation=activation, keep_z=z is not None,
                        has_bias=bias is not None, fixed_kw=geometry.kw if geometry.kw <= FIXED_KW else 0)
    places = samples * geometry.out_h * -(-geometry.out_w // (2 * shape["width"]))
    check_array(ctx, out, "out", dtype=dtype, shape=(samples, geometry.out_channels, geometry.out_h, geometry.out_w))
    kernel(ctx.queue, (channel_tiles, -(-places // 8) * 8), (1, 8), x=images, w=filters,
           bias=out if bias is None else bias, z=out if z is None else z, out=out,
           in_g=geometry.channels // geometry.groups, out_g=out_g, groups=geometry.groups, padded_h=padded_h,
           padded_w=padded_w, kh=geometry.kh, kw=geometry.kw, dh=geometry.dh, dw=geometry.dw, out_h=geometry.out_h,
           out_w=geometry.out_w, samples=samples, **activations.alpha_argument(activation, alpha))


def tiles(ctx, dtype) -> dict:
    """conv_direct's tile: the GEMM's rows and vector width on this device."""
    gemm = blas.settings(ctx, dtype).tiles
    return {"dtype": dtype, "rows": gemm.rows, "width": gemm.width or vector_width(dtype)}


