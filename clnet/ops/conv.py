"""2-D convolution in PyTorch's NCHW layout: im2col, a GEMM per group (blas.gemm, so that GPUs
use CLBlast where it is installed), and an epilogue kernel that adds the bias, applies the
activation and lays the result out as NCHW (kernels/conv.cl).

The column matrix of a chunk of images is (in / groups * kh * kw rows per group, chunk * out_h
* out_w columns): callers bound it by choosing the chunk (`chunk_size`). Every call is queued,
not waited on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import activations, blas
from .arrays import check_array, reduction_items, vector_width

WORKSPACE_BYTES = 64 << 20  # a convolution's column matrix and product, per chunk of images
ROW_GROUP = 8  # vectors of an output row per work-group in conv_output and conv_delta


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


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's: floor((size + padding - dilation * (kernel - 1) - 1) / stride) + 1, padding
    being the total of both sides."""
    return (size + padding - dilation * (kernel - 1) - 1) // stride + 1


def chunk_size(geometry: Geometry, batch: int, itemsize: int, budget: int | None = None) -> int:
    """Images per chunk: as many as keep the column matrix and the product within `budget`
    (default WORKSPACE_BYTES)."""
    budget = WORKSPACE_BYTES if budget is None else budget
    per_image = (geometry.rows + geometry.out_channels) * geometry.pixels * itemsize
    return max(1, min(batch, budget // max(per_image, 1)))


def workspace_bytes(geometry: Geometry, chunk: int, itemsize: int) -> tuple[int, int]:
    """(column matrix, product) bytes for a chunk of images."""
    columns = chunk * geometry.pixels * itemsize
    return geometry.rows * columns, geometry.out_channels * columns


def _images(ctx, x: cla.Array, geometry: Geometry, name: str) -> None:
    check_array(ctx, x, name)
    if x.ndim != 4 or tuple(x.shape[1:]) != (geometry.channels, geometry.height, geometry.width):
        raise ValueError(f"{name} must be (samples, {geometry.channels}, {geometry.height}, {geometry.width}), "
                         f"got {tuple(x.shape)}")


def im2col(ctx, x: cla.Array, cols: cla.Array, geometry: Geometry) -> cl.Event:
    """cols (rows, samples * pixels) = the column matrix of the images x. Queued."""
    dtype = ctx.real_dtype(x.dtype)
    _images(ctx, x, geometry, "x")
    samples = x.shape[0]
    check_array(ctx, cols, "cols", dtype=dtype, shape=(geometry.rows, samples * geometry.pixels))
    kernel = ctx.kernel("conv.cl", "im2col", dtype=dtype)
    local = 8
    lines = samples * geometry.out_h
    return kernel(ctx.queue, (-(-lines // local) * local, geometry.rows), (local, 1), x=x, cols=cols,
                  **geometry.arguments(samples))


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


def products(ctx, weights: cla.Array, cols: cla.Array, product: cla.Array, geometry: Geometry) -> None:
    """product (out_channels, columns) = weights @ cols, one GEMM per group. Queued."""
    g = geometry.groups
    w = weights.reshape(geometry.out_channels, geometry.rows // g)
    per_out, per_row = geometry.out_channels // g, geometry.rows // g
    for i in range(g):
        blas.gemm(ctx, w[i * per_out:(i + 1) * per_out], cols[i * per_row:(i + 1) * per_row],
                  product[i * per_out:(i + 1) * per_out])


def weight_gradients(ctx, dz: cla.Array, cols: cla.Array, grad_weights: cla.Array, geometry: Geometry,
                     accumulate: bool) -> None:
    """grad_weights (+)= dz @ cols.T, one GEMM per group. Queued."""
    g = geometry.groups
    dw = grad_weights.reshape(geometry.out_channels, geometry.rows // g)
    per_out, per_row = geometry.out_channels // g, geometry.rows // g
    for i in range(g):
        blas.gemm(ctx, dz[i * per_out:(i + 1) * per_out], cols[i * per_row:(i + 1) * per_row],
                  dw[i * per_out:(i + 1) * per_out], trans_b=True, beta=1.0 if accumulate else 0.0)


def column_gradients(ctx, weights: cla.Array, dz: cla.Array, dcols: cla.Array, geometry: Geometry) -> None:
    """dcols = weights.T @ dz, one GEMM per group (the gradient of the column matrix). Queued."""
    g = geometry.groups
    w = weights.reshape(geometry.out_channels, geometry.rows // g)
    per_out, per_row = geometry.out_channels // g, geometry.rows // g
    for i in range(g):
        blas.gemm(ctx, w[i * per_out:(i + 1) * per_out], dz[i * per_out:(i + 1) * per_out],
                  dcols[i * per_row:(i + 1) * per_row], trans_a=True)


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


def delta(ctx, delta_: cla.Array, saved: cla.Array, dz: cla.Array, activation: str | None,
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


def row_sums(ctx, x: cla.Array, out: cla.Array, accumulate: bool = False) -> cl.Event:
    """out (+)= the sums of the rows of the (rows, cols) x: one work-group per row. Queued."""
    dtype = ctx.real_dtype(x.dtype)
    check_array(ctx, x, "x")
    rows, cols = x.shape
    check_array(ctx, out, "out", dtype=dtype, shape=(rows,))
    items = min(reduction_items(ctx), 64)
    kernel = ctx.kernel("conv.cl", "row_sums", dtype=dtype)
    return kernel(ctx.queue, (rows * items,), (items,), x=x, out=out, cols=cols, accumulate=int(accumulate),
                  partial=cl.LocalMemory(items * np.dtype(dtype).itemsize))
