"""2-D convolution in PyTorch's NCHW layout: im2col, a GEMM per group (blas.gemm, so that GPUs
use CLBlast where it is installed), and an epilogue kernel that adds the bias, applies the
activation and lays the result out as NCHW (kernels/conv.cl); or, where clnet's GEMM runs the
products and the stride is 1, conv_direct's kernels on padded images (clnet/ops/conv_direct.py)
or, for 3x3 filters on small images with many channels, Winograd's F(2x2, 3x3) (clnet/ops/winograd.py),
which this module chooses per pass.

The column matrix of a chunk of images is (in / groups * kh * kw rows per group, chunk * out_h
* out_w columns): callers bound it by choosing the chunk (`chunk_size`). For clnet's GEMM the
forward pass writes it as the GEMM's packed B; the weight gradient is computed as
cols @ dz.T, and the input gradient of a stride-1 convolution as the convolution of dz with the
flipped filters (both the orientations clnet's GEMM runs fastest, bench/RESULTS.md), else as the
column matrix's gradient summed back into the images (col2im). Every call is queued, not waited
on.
"""

from __future__ import annotations

import math

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import activations, blas, conv_direct, depthwise, winograd
from .arrays import check_array, reduction_items, vector_width
from .conv_direct import direct, direct_filter_gradients, flat_where_faster, one_row
from .conv_geometry import MAX_TILE_COLUMNS, Geometry, flat, output_size, padded_size  # noqa: F401 (clnet.nn's)

WORKSPACE_BYTES = 64 << 20  # a convolution's column matrix and product, per chunk of images
WINOGRAD_IMAGE_ROWS = 7  # the shortest rows whose filters' gradient is read from padded images after Winograd
ROW_GROUP = 8  # vectors of an output row per work-group in conv_output and conv_delta
TRANSPOSE_BLOCK = conv_direct.TRANSPOSE_BLOCK  # the squares flip_weights and transpose_into work in


def _padded(columns: int) -> int:
    return -(-columns // MAX_TILE_COLUMNS) * MAX_TILE_COLUMNS


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


def forward(ctx, x: cla.Array, weights: cla.Array, bias: cla.Array | None, out: cla.Array, activation: str,
            alpha: float | None, z: cla.Array | None, cols: cla.Array, product: cla.Array, geometry: Geometry) -> None:
    """out = f(conv(x, weights) + bias) for a chunk of images, keeping the pre-activation in z
    when given; cols and product: the flat workspace (workspace_bytes). Queued."""
    dtype = ctx.real_dtype(x.dtype)
    _images(ctx, x, geometry, "x")
    if flat_where_faster(ctx, dtype, geometry) is not geometry:  # a 1x1 convolution: images of one row
        x, out, z, geometry = one_row(x), one_row(out), one_row(z), flat(geometry)
    if depthwise.applies(geometry):  # one filter per channel: kernels of their own
        depthwise.forward(ctx, x, weights, bias, out if z is None else z, geometry)
        if z is not None or activation != "linear":
            activations.forward(ctx, activation, out if z is None else z, out, alpha)
        return
    if winograd.applies(ctx, dtype, geometry, x.shape[0]):
        winograd.forward(ctx, x, weights, bias, out, activation, alpha, z, geometry)
        return
    if direct(ctx, dtype, geometry):
        conv_direct.forward(ctx, x, weights, bias, out, activation, alpha, z, cols, geometry)
        return
    columns = x.shape[0] * geometry.pixels
    filters, per_out, per_row = _groups(geometry, weights)
    plain = cols[:geometry.rows * columns].reshape(geometry.rows, columns)
    p = product[:geometry.out_channels * columns].reshape(geometry.out_channels, columns)
    im2col(ctx, x, plain, geometry)
    for i, w in enumerate(filters):
        blas.gemm(ctx, w, plain[i * per_row:(i + 1) * per_row], p[i * per_out:(i + 1) * per_out])
    output(ctx, p, bias, out, activation, alpha, z)


def keeps_columns(ctx, dtype, geometry: Geometry, samples: int) -> bool:
    """Whether `forward` of `samples` images leaves in cols what the backward pass of the same chunk
    reads again: x's plain column matrix (im2col and a GEMM) or x's padded images (conv_direct, where
    the filters' gradient reads them: direct_filter_gradients); not after the depthwise kernels or
    Winograd's."""
    geometry = flat_where_faster(ctx, dtype, geometry)
    if depthwise.applies(geometry) or winograd.applies(ctx, dtype, geometry, samples):
        return False
    return not direct(ctx, dtype, geometry) or direct_filter_gradients(ctx, dtype, geometry)


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
    geometry = flat_where_faster(ctx, dtype, geometry)
    back = geometry.transposed()
    return not (direct_filter_gradients(ctx, dtype, geometry) and back is not None and direct(ctx, dtype, back))


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

    The filters' gradient reads the padded images where conv_direct (or Winograd, on rows long
    enough) ran the forward pass (images_filter_gradients), else the column matrix (im2col and a
    GEMM)."""
    if flat_where_faster(ctx, ctx.real_dtype(x.dtype), geometry) is not geometry:  # 1x1: images of one row
        x, delta, grad_x, geometry = one_row(x), one_row(delta), one_row(grad_x), flat(geometry)
    if depthwise.applies(geometry):
        depthwise.backward(ctx, x, delta, weights, grad_weights, grad_bias, grad_x, geometry, accumulate)
        return
    if grad_bias is not None:
        channel_sums(ctx, delta, grad_bias, accumulate)
    dz = None  # delta as (out, samples * pixels), made where a product or col2im reads it
    if grad_weights is not None and images_filter_gradients(ctx, ctx.real_dtype(x.dtype), geometry, x.shape[0]):
        images = conv_direct.images(ctx, x, cols, geometry, columns_kept)
        conv_direct.filter_gradients(ctx, images, delta, grad_weights, geometry, accumulate)
    elif grad_weights is not None:
        dz = _delta_columns(ctx, delta, product, geometry)
        columns = dz.shape[1]
        plain = cols[:geometry.rows * columns].reshape(geometry.rows, columns)
        if not columns_kept:
            im2col(ctx, x, plain, geometry)
        weight_gradients(ctx, dz, plain, grad_weights, geometry, accumulate)
    if grad_x is not None:
        input_gradients(ctx, weights, delta, dz, flipped, cols, product, grad_x, geometry)


def images_filter_gradients(ctx, dtype, geometry: Geometry, samples: int) -> bool:
    """Whether the filters' gradient of `samples` images is read from their padded images
    (conv_direct.filter_gradients), not from a column matrix: where conv_direct runs the forward
    pass, or Winograd does on rows of at least WINOGRAD_IMAGE_ROWS pixels (no column matrix kept
    from the forward pass either way; bench/bench_winograd.py: 1.2-1.55x faster than im2col and a
    GEMM on 7x7 and 8x8 images, and on 4x4 ones 0.8-1.4x)."""
    return direct_filter_gradients(ctx, dtype, geometry) or (
        geometry.out_w >= WINOGRAD_IMAGE_ROWS and winograd.applies(ctx, dtype, geometry, samples))


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
    dtype, back = ctx.real_dtype(delta.dtype), geometry.transposed()
    if back is not None and winograd.applies(ctx, dtype, back, dx.shape[0]):
        winograd.forward(ctx, delta, weights, None, dx, "linear", None, None, back, flip=True)
        return
    if back is None or (not direct(ctx, dtype, back) and geometry.out_channels >= 2 * geometry.channels):
        dz = _delta_columns(ctx, delta, product, geometry) if dz is None else dz
        columns = dx.shape[0] * geometry.pixels
        dcols = cols[:geometry.rows * columns].reshape(geometry.rows, columns)
        filters, per_out, per_row = _groups(geometry, weights)
        for i, w in enumerate(filters):
            blas.gemm(ctx, w, dz[i * per_out:(i + 1) * per_out], dcols[i * per_row:(i + 1) * per_row], trans_a=True)
        col2im(ctx, dcols, dx, geometry)
        return
    if flat_where_faster(ctx, dtype, back) is not back:  # a 1x1 convolution: images of one row
        delta, dx, back = one_row(delta), one_row(dx), flat(back)
    if direct(ctx, dtype, back):  # the filters flipped as conv_direct packs them
        conv_direct.forward(ctx, delta, weights, None, dx, "linear", None, None, cols, back, flip=True)
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
