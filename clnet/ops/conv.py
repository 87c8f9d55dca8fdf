"""2-D convolution in PyTorch's NCHW layout: im2col, a GEMM per group (blas.gemm, so that GPUs
use CLBlast where it is installed), and an epilogue kernel that adds the bias, applies the
activation and lays the result out as NCHW (kernels/conv.cl).

The column matrix of a chunk of images is (in / groups * kh * kw rows per group, chunk * out_h
* out_w columns): callers bound it by choosing the chunk (`chunk_size`). For clnet's GEMM the
forward pass writes it as the GEMM's packed B; the weight gradient is computed as
cols @ dz.T, and the input gradient of a stride-1 convolution as the convolution of dz with the
flipped filters (both the orientations clnet's GEMM runs fastest, bench/RESULTS.md), else as the
column matrix's gradient summed back into the images (col2im). Every call is queued, not waited
on.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import activations, blas, depthwise, tiled_gemm
from .arrays import check_array, reduction_items, vector_width

WORKSPACE_BYTES = 64 << 20  # a convolution's column matrix and product, per chunk of images
ROW_GROUP = 8  # vectors of an output row per work-group in conv_output and conv_delta
FIXED_KW = 7  # filters up to this wide get conv_direct's row loop unrolled (a build per width)
MAX_TILE_COLUMNS = 64  # the widest tile clnet's GEMM uses (what a packed column matrix is padded to)
TRANSPOSE_BLOCK = 16  # the squares flip_weights and transpose_into work in (BLOCK in conv.cl)


@dataclass(frozen=True)
class Geometry:
    """One convolution's shapes: input (channels, height, width), filters (out_channels,
    channels / groups, kh, kw), stride, padding before (top, left), dilation, and the output."""

    channels: int
    height: int
    width: int
    out_channels: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    groups: int
    out_h: int
    out_w: int

    @property
    def pixels(self) -> int:
        return self.out_h * self.out_w

    @property
    def rows(self) -> int:
        """Rows of the column matrix: one per weight of a filter, for every group."""
        return self.channels * self.kh * self.kw

    def arguments(self, samples: int) -> dict:
        return {"channels": self.channels, "height": self.height, "width": self.width, "kh": self.kh, "kw": self.kw,
                "sh": self.sh, "sw": self.sw, "ph": self.ph, "pw": self.pw, "dh": self.dh, "dw": self.dw,
                "out_h": self.out_h, "out_w": self.out_w, "samples": samples}


    def transposed(self) -> Geometry | None:
        """The stride-1 convolution of dz that gives dx (filters flipped, channels swapped), where
        there is one: stride and dilation 1, and padding at most kernel - 1 on each side."""
        total_h, total_w = self._total_padding()
        if (self.sh, self.sw, self.dh, self.dw) != (1, 1, 1, 1) or max(self.ph, total_h - self.ph) > self.kh - 1 \
                or max(self.pw, total_w - self.pw) > self.kw - 1:
            return None
        return Geometry(self.out_channels, self.out_h, self.out_w, self.channels, self.kh, self.kw, 1, 1,
                        self.kh - 1 - self.ph, self.kw - 1 - self.pw, 1, 1, self.groups, self.height, self.width)

    def _total_padding(self) -> tuple[int, int]:
        """Both sides' padding, from the output size (what the padding after the image is)."""
        return ((self.out_h - 1) * self.sh + self.dh * (self.kh - 1) + 1 - self.height,
                (self.out_w - 1) * self.sw + self.dw * (self.kw - 1) + 1 - self.width)


def flat(geometry: Geometry) -> Geometry:
    """A 1x1 convolution of stride 1 without padding as one of images of a single row (height 1,
    width height * width): the same sums, on rows that fill conv_direct's tiles (an 8x8 image is 64
    pixels in 4 whole tiles of 16, not 8 rows of 8 in 8 tiles) and read in place where they are
    whole tiles (no padded copy). Any other geometry as it is."""
    g = geometry
    if (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) != (1, 1, 1, 1, 0, 0) or (g.out_h, g.out_w) != (g.height, g.width) \
            or g.height == 1:
        return g
    return dataclasses.replace(g, height=1, width=g.pixels, out_h=1, out_w=g.pixels)


def _flat_where_faster(ctx, dtype, geometry: Geometry) -> Geometry:
    """flat(geometry) where that has a 1x1 convolution whose rows are too short for conv_direct run
    direct on images read in place (8x8 images: 1.5-1.8x faster than im2col and a GEMM); else the
    geometry as it is (flat, 16x16 images ran 8% slower, and 7x7 ones, copied, slower than im2col)."""
    one_row = flat(geometry)
    if one_row is geometry or direct(ctx, dtype, geometry) or not direct(ctx, dtype, one_row) \
            or not _in_place(ctx, dtype, one_row):
        return geometry
    return one_row


def _one_row(a: cla.Array | None) -> cla.Array | None:
    """Images (samples, channels, h, w) as flat's geometry sees them: (samples, channels, 1, h * w)."""
    return None if a is None else a.reshape(a.shape[0], a.shape[1], 1, -1)


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's: floor((size + padding - dilation * (kernel - 1) - 1) / stride) + 1, padding
    being the total of both sides."""
    return (size + padding - dilation * (kernel - 1) - 1) // stride + 1


def _padded(columns: int) -> int:
    return -(-columns // MAX_TILE_COLUMNS) * MAX_TILE_COLUMNS


def padded_size(geometry: Geometry, tile_cols: int = MAX_TILE_COLUMNS) -> tuple[int, int]:
    """(height, width) of an image zero-padded for conv_direct with tiles of tile_cols output
    columns: both sides' padding, and the columns that the last tile of a row reads past them
    (the most for the widest tile: what the workspace is sized for)."""
    total_h, _ = geometry._total_padding()
    return geometry.height + total_h, -(-geometry.out_w // tile_cols) * tile_cols + geometry.dw * (geometry.kw - 1)


def workspace_bytes(geometry: Geometry, chunk: int, itemsize: int, columns: bool = True) -> tuple[int, int]:
    """(column matrix, product) bytes for a chunk of images: enough for the forward pass, the
    weight gradient and the input gradient's column matrix (or padded images) and product.
    columns False: no pass makes a column matrix (`makes_columns`), padded images are enough."""
    cols = geometry.rows * _padded(chunk * geometry.pixels) if columns else 0
    product = geometry.out_channels * chunk * geometry.pixels
    for g in (geometry, geometry.transposed()):
        if g is not None:
            padded = chunk * g.channels * math.prod(padded_size(g))
            cols = max(cols, g.rows * _padded(chunk * g.pixels), padded) if columns else max(cols, padded)
            product = max(product, g.out_channels * chunk * g.pixels)
    return cols * itemsize, product * itemsize


def chunk_size(geometry: Geometry, batch: int, itemsize: int, budget: int | None = None,
               columns: bool = True) -> int:
    """Images per chunk: as many as keep the column matrix (or the padded images, columns False)
    and the product within `budget` (default WORKSPACE_BYTES)."""
    budget = WORKSPACE_BYTES if budget is None else budget
    per_image = sum(workspace_bytes(geometry, 1, itemsize, columns))
    return max(1, min(batch, budget // max(per_image, 1)))


def _images(ctx, x: cla.Array, geometry: Geometry, name: str) -> None:
    check_array(ctx, x, name)
    if x.ndim != 4 or tuple(x.shape[1:]) != (geometry.channels, geometry.height, geometry.width):
        raise ValueError(f"{name} must be (samples, {geometry.channels}, {geometry.height}, {geometry.width}), "
                         f"got {tuple(x.shape)}")


def im2col(ctx, x: cla.Array, cols: cla.Array, geometry: Geometry, tile_cols: int = 0) -> cl.Event:
    """cols = the column matrix of the images x: (rows, samples * pixels) row-major, or with
    tile_cols, each group's rows as the GEMM's packed B (cols then a flat array). Queued."""
    dtype = ctx.real_dtype(x.dtype)
    _images(ctx, x, geometry, "x")
    samples = x.shape[0]
    columns = samples * geometry.pixels
    padded = -(-columns // tile_cols) * tile_cols if tile_cols else columns
    check_array(ctx, cols, "cols", dtype=dtype)
    if cols.size < geometry.rows * padded:
        raise ValueError(f"cols holds {cols.size} elements, the column matrix needs {geometry.rows * padded}")
    kernel = ctx.kernel("conv.cl", "im2col", dtype=dtype, tile_cols=tile_cols)
    lines = samples * geometry.out_h
    return kernel(ctx.queue, (-(-lines // 8) * 8, geometry.rows), (8, 1), x=x, cols=cols,
                  rows_per_group=geometry.rows // geometry.groups, **geometry.arguments(samples))


def col2im(ctx, cols: cla.Array, dx: cla.Array, geometry: Geometry) -> cl.Event:
    """dx (samples, channels, height, width) = each pixel's sum over the columns that read it."""
    dtype = ctx.real_dtype(cols.dtype)
    _images(ctx, dx, geometry, "dx")
    samples = dx.shape[0]
    check_array(ctx, cols, "cols", dtype=dtype, shape=(geometry.rows, samples * geometry.pixels))
    kernel = ctx.kernel("conv.cl", "col2im", dtype=dtype)
    local = 8
    lines = samples * geometry.channels * geometry.height
    return kernel(ctx.queue, (-(-lines // local) * local,), (local,), cols=cols, dx=dx,
                  **geometry.arguments(samples))


def _groups(geometry: Geometry, weights: cla.Array):
    """Each group's filters as a 2-D view (out / groups, rows / groups), and the group's sizes."""
    g = geometry.groups
    per_out, per_row = geometry.out_channels // g, geometry.rows // g
    w = weights.reshape(geometry.out_channels, per_row)
    return [w[i * per_out:(i + 1) * per_out] for i in range(g)], per_out, per_row


def direct(ctx, dtype, geometry: Geometry) -> bool:
    """Whether conv_direct computes this convolution: stride 1 where clnet's GEMM would run the
    product (its register tile on CPUs; GPUs with CLBlast keep im2col and CLBlast), on output rows
    that fill at least 5/8 of its tile (2 vectors): LeNet's rows of 10 of 16 ran 3.7x faster direct
    than by im2col (0.74 against 2.7 ms), resnet18's of 8 to 2 (on 64x64 images) slower."""
    columns, per_out, per_row = geometry.pixels, geometry.out_channels // geometry.groups, \
        geometry.rows // geometry.groups
    return (geometry.sh, geometry.sw) == (1, 1) and 8 * geometry.out_w >= 5 * 2 * _tiles(ctx, dtype)["width"] \
        and blas.settings(ctx, dtype).backend(per_out, columns * 64, per_row) == "clnet"


def forward(ctx, x: cla.Array, weights: cla.Array, bias: cla.Array | None, out: cla.Array, activation: str,
            alpha: float | None, z: cla.Array | None, cols: cla.Array, product: cla.Array, geometry: Geometry) -> None:
    """out = f(conv(x, weights) + bias) for a chunk of images, keeping the pre-activation in z
    when given; cols and product: the flat workspace (workspace_bytes). Queued."""
    dtype = ctx.real_dtype(x.dtype)
    _images(ctx, x, geometry, "x")
    if _flat_where_faster(ctx, dtype, geometry) is not geometry:  # a 1x1 convolution: images of one row
        x, out, z, geometry = _one_row(x), _one_row(out), _one_row(z), flat(geometry)
    if depthwise.applies(geometry):  # one filter per channel: kernels of their own
        depthwise.forward(ctx, x, weights, bias, out if z is None else z, geometry)
        if z is not None or activation != "linear":
            activations.forward(ctx, activation, out if z is None else z, out, alpha)
        return
    if direct(ctx, dtype, geometry):
        _direct(ctx, x, weights, bias, out, activation, alpha, z, cols, geometry)
        return
    columns = x.shape[0] * geometry.pixels
    filters, per_out, per_row = _groups(geometry, weights)
    plain = cols[:geometry.rows * columns].reshape(geometry.rows, columns)
    p = product[:geometry.out_channels * columns].reshape(geometry.out_channels, columns)
    im2col(ctx, x, plain, geometry)
    for i, w in enumerate(filters):
        blas.gemm(ctx, w, plain[i * per_row:(i + 1) * per_row], p[i * per_out:(i + 1) * per_out])
    output(ctx, p, bias, out, activation, alpha, z)


def keeps_columns(ctx, dtype, geometry: Geometry) -> bool:
    """Whether `forward` leaves in cols what the backward pass of the same chunk reads again: x's
    plain column matrix (im2col and a GEMM) or x's padded images (conv_direct, where the filters'
    gradient reads them: direct_filter_gradients); not after the depthwise kernels."""
    geometry = _flat_where_faster(ctx, dtype, geometry)
    if depthwise.applies(geometry):
        return False
    return not direct(ctx, dtype, geometry) or direct_filter_gradients(ctx, dtype, geometry)


def _padded_images(ctx, padded: cla.Array, samples: int, geometry: Geometry) -> tuple[cla.Array, int, int]:
    """The front of the flat `padded` that holds samples padded images (padded_size), and their
    padded height and width."""
    padded_h, padded_w = padded_size(geometry, 2 * _tiles(ctx, ctx.real_dtype(padded.dtype))["width"])
    return padded[:samples * geometry.channels * padded_h * padded_w], padded_h, padded_w


def _in_place(ctx, dtype, geometry: Geometry) -> bool:
    """Whether the images are their own padded layout (no padding, rows of whole tiles and the
    filter's reach): conv_direct reads them where they are."""
    tile_cols = 2 * _tiles(ctx, dtype)["width"]
    return (geometry.ph, geometry.pw) == (0, 0) and padded_size(geometry, tile_cols) == (geometry.height,
                                                                                       geometry.width)


def _pad(ctx, x: cla.Array, padded: cla.Array, geometry: Geometry) -> cla.Array:
    """The images x zero-padded (padded_size) into the front of the flat `padded`; returns that part
    (x itself where it is its own padded layout: _in_place)."""
    dtype = ctx.real_dtype(x.dtype)
    if _in_place(ctx, dtype, geometry):
        return x
    images, padded_h, padded_w = _padded_images(ctx, padded, x.shape[0], geometry)
    planes = x.shape[0] * geometry.channels
    pad = ctx.kernel("conv_direct.cl", "pad_images", **_tiles(ctx, dtype))
    pad(ctx.queue, (-(-planes * padded_h // 8) * 8,), (8,), x=x, padded=images, planes=planes,
        height=geometry.height, width=geometry.width, top=geometry.ph, left=geometry.pw, padded_h=padded_h,
        padded_w=padded_w)
    return images


def _direct(ctx, x, weights, bias, out, activation, alpha, z, padded, geometry: Geometry) -> None:
    dtype = ctx.real_dtype(x.dtype)
    samples = x.shape[0]
    padded_h, padded_w = padded_size(geometry, 2 * _tiles(ctx, dtype)["width"])
    images = _pad(ctx, x, padded, geometry)
    tiles = _tiles(ctx, dtype)
    out_g, k_count = geometry.out_channels // geometry.groups, geometry.rows // geometry.groups
    channel_tiles = geometry.groups * -(-out_g // tiles["rows"])
    filters = cla.Array(ctx.queue, channel_tiles * tiles["rows"] * k_count, dtype, data=ctx.scratch(
        "conv.filters", channel_tiles * tiles["rows"] * k_count * dtype.itemsize))
    pack = ctx.kernel("conv_direct.cl", "pack_filters", **tiles)
    pack(ctx.queue, (-(-filters.size // 64) * 64,), (64,), w=weights, packed=filters, out_g=out_g,
         groups=geometry.groups, k_count=k_count)
    kernel = ctx.kernel("conv_direct.cl", "conv_direct", **tiles, activation=activation, keep_z=z is not None,
                        has_bias=bias is not None, fixed_kw=geometry.kw if geometry.kw <= FIXED_KW else 0)
    places = samples * geometry.out_h * -(-geometry.out_w // (2 * tiles["width"]))
    check_array(ctx, out, "out", dtype=dtype, shape=(samples, geometry.out_channels, geometry.out_h, geometry.out_w))
    kernel(ctx.queue, (channel_tiles, -(-places // 8) * 8), (1, 8), x=images, w=filters,
           bias=out if bias is None else bias, z=out if z is None else z, out=out,
           in_g=geometry.channels // geometry.groups, out_g=out_g, groups=geometry.groups, padded_h=padded_h,
           padded_w=padded_w, kh=geometry.kh, kw=geometry.kw, dh=geometry.dh, dw=geometry.dw, out_h=geometry.out_h,
           out_w=geometry.out_w, samples=samples, **activations.alpha_argument(activation, alpha))


def _tiles(ctx, dtype) -> dict:
    """conv_direct's tile: the GEMM's rows and vector width on this device."""
    tiles = blas.settings(ctx, dtype).tiles
    return {"dtype": dtype, "rows": tiles.rows, "width": tiles.width or vector_width(dtype)}


def weight_gradients(ctx, dz: cla.Array, cols: cla.Array, grad_weights: cla.Array, geometry: Geometry,
                     accumulate: bool) -> None:
    """grad_weights (+)= dz @ cols.T per group, cols the plain column matrix, computed as
    cols @ dz.T (the orientation clnet's GEMM runs fastest on long columns: rows of cols read in
    place) and transposed into place, or directly where the columns are few. Queued."""
    dtype = ctx.real_dtype(dz.dtype)
    filters, per_out, per_row = _groups(geometry, grad_weights)
    if 2 * dz.shape[1] < per_row:  # short in k (small images): dz @ cols.T in place beats a transpose
        for i, dw in enumerate(filters):  # resnet18's 512 -> 512 on 2x2: 2.4 against 7.0 ms
            blas.gemm(ctx, dz[i * per_out:(i + 1) * per_out], cols[i * per_row:(i + 1) * per_row], dw,
                      trans_b=True, beta=1.0 if accumulate else 0.0)
        return
    transposed = cla.Array(ctx.queue, (per_row, per_out), dtype,
                           data=ctx.scratch("conv.weight_gradient", per_row * per_out * dtype.itemsize))
    kernel = ctx.kernel("conv.cl", "transpose_into", dtype=dtype)
    for i, dw in enumerate(filters):
        blas.gemm(ctx, cols[i * per_row:(i + 1) * per_row], dz[i * per_out:(i + 1) * per_out], transposed,
                  trans_b=True)
        blocks = -(-per_out // TRANSPOSE_BLOCK) * -(-per_row // TRANSPOSE_BLOCK)
        kernel(ctx.queue, (-(-blocks // 64) * 64,), (64,), src=transposed, dst=dw, rows=per_out, cols=per_row,
               accumulate=int(accumulate), parts=1)


def makes_columns(ctx, dtype, geometry: Geometry) -> bool:
    """Whether a pass of this convolution makes a column matrix; not where conv_direct runs the
    forward pass and the input gradient and the filters' gradient is read from padded images,
    whose workspace is then a few times smaller (workspace_bytes' columns)."""
    geometry = _flat_where_faster(ctx, dtype, geometry)
    back = geometry.transposed()
    return not (direct_filter_gradients(ctx, dtype, geometry) and back is not None and direct(ctx, dtype, back))


def direct_filter_gradients(ctx, dtype, geometry: Geometry) -> bool:
    """Whether the filters' gradient is computed from the padded images (`filter_gradients`), not
    from a column matrix: where the forward pass is conv_direct (so there is no column matrix to
    keep) and the convolution has one group."""
    return geometry.groups == 1 and direct(ctx, dtype, geometry)


def filter_gradients(ctx, images: cla.Array, delta: cla.Array, grad_weights: cla.Array, geometry: Geometry,
                     accumulate: bool) -> None:
    """grad_weights (+)= dz @ cols.T, dz the chunk's delta = dC/dz (samples, out, out_h, out_w) and
    the column matrix cols read in place from `images`, the chunk's images as _pad lays them out
    (kernels/conv_direct.cl's filter_gradient); delta packed first, straight from its NCHW layout
    (pack_b_t by blocks of an image's pixels), k (the chunk's output lines) cut into parts as
    clnet's GEMM cuts it. Queued."""
    dtype = ctx.real_dtype(delta.dtype)
    tiles = blas.settings(ctx, dtype).tiles
    shape = _tiles(ctx, dtype)
    out, rows, pixels = geometry.out_channels, geometry.rows, geometry.pixels
    columns = delta.shape[0] * pixels
    tile_cols = 2 * shape["width"]
    panels, row_tiles = -(-out // tile_cols), -(-rows // shape["rows"])
    packed = ctx.scratch("conv.packed_dz", panels * tile_cols * columns * dtype.itemsize)
    pack = ctx.kernel("pack.cl", "pack_b_t", **shape)
    pack(ctx.queue, *tiled_gemm.pack_sizes(panels, -(-columns // shape["width"])), b=delta, ldb=pixels,
         k_count=columns, n=out, packed=packed, block=pixels, block_stride=out * pixels)
    lines = columns // geometry.out_w
    parts = tiled_gemm.k_parts(rows, out, columns, tiles, dtype, ctx.info.compute_units)
    part_lines = -(-lines // parts)
    parts = -(-lines // part_lines)
    sums = ctx.scratch("conv.filter_parts", parts * rows * out * dtype.itemsize)
    local = tiled_gemm.group_size(ctx, tiles, row_tiles)
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


def flip_weights(ctx, weights: cla.Array, flipped: cla.Array, geometry: Geometry) -> cl.Event:
    """The filters of `geometry.transposed()`: flipped in space, in and out channels swapped."""
    dtype = ctx.real_dtype(weights.dtype)
    check_array(ctx, flipped, "flipped", dtype=dtype)
    kernel = ctx.kernel("conv.cl", "flip_weights", dtype=dtype)
    out_g, in_g = geometry.out_channels // geometry.groups, geometry.channels // geometry.groups
    blocks = geometry.groups * -(-out_g // TRANSPOSE_BLOCK) * -(-in_g // TRANSPOSE_BLOCK)
    return kernel(ctx.queue, (-(-blocks // 64) * 64,), (64,), w=weights, flipped=flipped,
                  out_channels=geometry.out_channels, in_g=geometry.channels // geometry.groups,
                  groups=geometry.groups, kh=geometry.kh, kw=geometry.kw)


def backward(ctx, x: cla.Array, delta: cla.Array, weights: cla.Array, grad_weights: cla.Array | None,
             grad_bias: cla.Array | None, grad_x: cla.Array | None, flipped: cla.Array | None, cols: cla.Array,
             product: cla.Array, geometry: Geometry, accumulate: bool, columns_kept: bool = False) -> None:
    """From delta = dC/dz (samples, out, out_h, out_w) of a chunk of images x: the filters' and the
    bias's gradients (added to with accumulate; None: frozen) and dC/dx into grad_x (unless None). cols,
    product: the flat workspace; flipped: the filters' size (input_gradients); columns_kept: cols
    still holds x's column matrix or padded images from the forward pass (`keeps_columns`), which
    are not made again.
    Queued.

    The filters' gradient reads the padded images where conv_direct ran the forward pass
    (filter_gradients), else the column matrix (im2col and a GEMM)."""
    if _flat_where_faster(ctx, ctx.real_dtype(x.dtype), geometry) is not geometry:  # 1x1: images of one row
        x, delta, grad_x, geometry = _one_row(x), _one_row(delta), _one_row(grad_x), flat(geometry)
    if depthwise.applies(geometry):
        depthwise.backward(ctx, x, delta, weights, grad_weights, grad_bias, grad_x, geometry, accumulate)
        return
    if grad_bias is not None:
        channel_sums(ctx, delta, grad_bias, accumulate)
    dz = None  # delta as (out, samples * pixels), made where a product or col2im reads it
    if grad_weights is not None and direct_filter_gradients(ctx, ctx.real_dtype(x.dtype), geometry):
        images = _padded_images(ctx, cols, x.shape[0], geometry)[0] if columns_kept and not _in_place(
            ctx, ctx.real_dtype(x.dtype), geometry) else _pad(ctx, x, cols, geometry)
        filter_gradients(ctx, images, delta, grad_weights, geometry, accumulate)
    elif grad_weights is not None:
        dz = _delta_columns(ctx, delta, product, geometry)
        columns = dz.shape[1]
        plain = cols[:geometry.rows * columns].reshape(geometry.rows, columns)
        if not columns_kept:
            im2col(ctx, x, plain, geometry)
        weight_gradients(ctx, dz, plain, grad_weights, geometry, accumulate)
    if grad_x is not None:
        input_gradients(ctx, weights, delta, dz, flipped, cols, product, grad_x, geometry)


def _delta_columns(ctx, delta: cla.Array, product: cla.Array, geometry: Geometry) -> cla.Array:
    """delta (samples, out, pixels) as (out, samples * pixels) in the front of `product`. Queued."""
    columns = delta.shape[0] * geometry.pixels
    dz = product[:geometry.out_channels * columns].reshape(geometry.out_channels, columns)
    delta_columns(ctx, delta, delta, dz, None)
    return dz


def input_gradients(ctx, weights: cla.Array, delta: cla.Array, dz: cla.Array | None, flipped: cla.Array,
                    cols: cla.Array, product: cla.Array, dx: cla.Array, geometry: Geometry) -> None:
    """dx = dC/dx from delta = dC/dz (samples, out, out_h, out_w), also laid out as dz (out,
    columns): for a stride-1 convolution as the convolution of delta with the flipped filters
    (`flipped`: weights' size), else as the column matrix's gradient weights.T @ dz summed back
    into the images (col2im). cols and product: the workspace. Queued.

    col2im also where the stride-1 convolution of delta would not run direct and has at least
    twice the channels out as in: its im2col product is then (in, out * kh * kw) @ (out * kh * kw,
    columns), long in k and short in m; weights.T @ dz is (in * kh * kw, out) @ (out, columns)
    (64 -> 128 on 8x8 images: 1.8 against 4.5 ms; with as many channels out as in, the two
    measured alike, and with fewer out the transposed convolution won, 128 -> 32: 1.9 against 4.2)."""
    back = geometry.transposed()
    if back is None or (not direct(ctx, ctx.real_dtype(delta.dtype), back)
                        and geometry.out_channels >= 2 * geometry.channels):
        dz = _delta_columns(ctx, delta, product, geometry) if dz is None else dz
        columns = dx.shape[0] * geometry.pixels
        dcols = cols[:geometry.rows * columns].reshape(geometry.rows, columns)
        filters, per_out, per_row = _groups(geometry, weights)
        for i, w in enumerate(filters):
            blas.gemm(ctx, w, dz[i * per_out:(i + 1) * per_out], dcols[i * per_row:(i + 1) * per_row], trans_a=True)
        col2im(ctx, dcols, dx, geometry)
        return
    flip_weights(ctx, weights, flipped, geometry)
    forward(ctx, delta, flipped.reshape(back.out_channels, back.channels // back.groups, back.kh, back.kw), None,
            dx, "linear", None, None, cols, product, back)


def _rows_launch(channels: int, samples: int, pixels: int, dtype) -> tuple[tuple, tuple]:
    vectors = -(-pixels // vector_width(dtype))
    return (-(-vectors // ROW_GROUP) * ROW_GROUP, samples * channels), (ROW_GROUP, 1)


def output(ctx, product: cla.Array, bias: cla.Array | None, out: cla.Array, activation: str,
           alpha: float | None = None, z: cla.Array | None = None) -> cl.Event:
    """out (samples, channels, pixels) = f(product (channels, samples * pixels) + bias), keeping
    the pre-activation in z when given. Queued."""
    dtype = ctx.real_dtype(out.dtype)
    samples, channels = out.shape[:2]
    pixels = math.prod(out.shape[2:])
    check_array(ctx, out, "out", dtype=dtype)
    check_array(ctx, product, "product", dtype=dtype, shape=(channels, samples * pixels))
    if bias is not None:
        check_array(ctx, bias, "bias", dtype=dtype, shape=(channels,))
    if z is not None:
        check_array(ctx, z, "z", dtype=dtype, shape=out.shape)
    kernel = ctx.kernel("conv.cl", "conv_output", dtype=dtype, activation=activation, keep_z=z is not None,
                        has_bias=bias is not None)
    return kernel(ctx.queue, *_rows_launch(channels, samples, pixels, dtype), product=product,
                  bias=out if bias is None else bias, z=out if z is None else z, out=out, channels=channels,
                  pixels=pixels, samples=samples, **activations.alpha_argument(activation, alpha))


def delta_columns(ctx, delta_: cla.Array, saved: cla.Array, dz: cla.Array, activation: str | None,
          alpha: float | None = None) -> cl.Event:
    """dz (channels, samples * pixels) = delta (samples, channels, pixels) * f'(saved), saved
    what the derivative reads (activations.reads); activation None: delta is dC/dz already."""
    activation = activation or "linear"
    dtype = ctx.real_dtype(delta_.dtype)
    samples, channels = delta_.shape[:2]
    pixels = math.prod(delta_.shape[2:])
    check_array(ctx, delta_, "delta", dtype=dtype)
    check_array(ctx, saved, "saved", dtype=dtype, shape=delta_.shape)
    check_array(ctx, dz, "dz", dtype=dtype, shape=(channels, samples * pixels))
    kernel = ctx.kernel("conv.cl", "conv_delta", dtype=dtype, activation=activation, keep_z=False, has_bias=False)
    return kernel(ctx.queue, *_rows_launch(channels, samples, pixels, dtype), delta=delta_,
                  **{activations.reads(activation): saved}, dz=dz, channels=channels, pixels=pixels,
                  samples=samples, **activations.alpha_argument(activation, alpha))


def channel_sums(ctx, x: cla.Array, out: cla.Array, accumulate: bool = False) -> cl.Event:
    """out (+)= the sum of each channel of x (samples, channels, ...): one work-group per channel,
    each work-item whole images' runs on CPUs, neighbouring elements on GPUs. Queued."""
    dtype = ctx.real_dtype(x.dtype)
    check_array(ctx, x, "x")
    samples, channels = x.shape[:2]
    check_array(ctx, out, "out", dtype=dtype, shape=(channels,))
    kernel = ctx.kernel("conv.cl", "channel_sums", dtype=dtype, contiguous=ctx.info.type == "CPU")
    # one group per channel: the group size as it will run (Kernel.work_group), so that groups = channels
    (items,) = kernel.work_group(ctx.device, (min(reduction_items(ctx), 64),))
    return kernel(ctx.queue, (channels * items,), (items,), x=x, out=out, samples=samples,
                  pixels=x.size // max(samples * channels, 1), accumulate=int(accumulate),
                  partial=cl.LocalMemory(items * np.dtype(dtype).itemsize))
