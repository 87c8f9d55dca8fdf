"""Depthwise convolutions (one filter per channel: groups = channels = out_channels), the layers
MobileNet and EfficientNet are made of, by kernels of their own (kernels/depthwise.cl): im2col
and a GEMM per group ran one tiny product per channel (30 ms for 144 channels of 16x16 images
where PyTorch took 0.26). Every call is queued, not waited on."""

from __future__ import annotations

import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array, launch

LOCAL = 8  # work-items per group: one row each


def applies(geometry) -> bool:
    """Whether these kernels compute the convolution: one filter per channel."""
    return geometry.groups > 1 and geometry.groups == geometry.channels == geometry.out_channels


def _params(dtype, g) -> dict:
    return {"dtype": dtype, "kh": g.kh, "kw": g.kw, "sh": g.sh, "sw": g.sw, "ph": g.ph, "pw": g.pw, "dh": g.dh,
            "dw": g.dw}


def _sizes(samples: int, g) -> dict:
    return {"planes": samples * g.channels, "channels": g.channels, "height": g.height, "width": g.width,
            "out_h": g.out_h, "out_w": g.out_w}


def _check(ctx, x: cla.Array, dz: cla.Array, weights: cla.Array, g):
    dtype = ctx.real_dtype(x.dtype)
    samples = x.shape[0]
    check_array(ctx, x, "x", shape=(samples, g.channels, g.height, g.width))
    check_array(ctx, dz, "dz", dtype=dtype, shape=(samples, g.channels, g.out_h, g.out_w))
    check_array(ctx, weights, "weights", dtype=dtype, shape=(g.channels, 1, g.kh, g.kw))
    return dtype, samples


def forward(ctx, x: cla.Array, weights: cla.Array, bias: cla.Array | None, z: cla.Array, geometry) -> cl.Event:
    """z = the depthwise convolution of x (+ bias), (samples, channels, out_h, out_w)."""
    dtype, samples = _check(ctx, x, z, weights, geometry)
    kernel = ctx.kernel("depthwise.cl", "depthwise_forward", **_params(dtype, geometry))
    return launch(ctx, kernel, samples * geometry.channels * geometry.out_h, x=x, w=weights,
                  bias=weights if bias is None else bias, z=z, has_bias=int(bias is not None),
                  **_sizes(samples, geometry))


def backward(ctx, x: cla.Array, dz: cla.Array, weights: cla.Array, grad_weights: cla.Array | None,
             grad_bias: cla.Array | None, grad_x: cla.Array | None, geometry, accumulate: bool) -> None:
    """From dz = dC/dz: the filters' and the bias's gradients (added to with accumulate; None:
    frozen) and dC/dx into grad_x (unless None)."""
    dtype, samples = _check(ctx, x, dz, weights, geometry)
    params, sizes = _params(dtype, geometry), _sizes(samples, geometry)
    if grad_weights is not None or grad_bias is not None:
        kernel = ctx.kernel("depthwise.cl", "depthwise_filter_gradient", **params)
        launch(ctx, kernel, geometry.channels, x=x, dz=dz,
               dw=weights if grad_weights is None else grad_weights, db=weights if grad_bias is None else grad_bias,
               has_weights=int(grad_weights is not None), has_bias=int(grad_bias is not None),
               accumulate=int(accumulate), samples=samples, **sizes)
    if grad_x is not None:
        check_array(ctx, grad_x, "grad_x", dtype=dtype, shape=x.shape)
        kernel = ctx.kernel("depthwise.cl", "depthwise_input_gradient", **params)
        launch(ctx, kernel, samples * geometry.channels * geometry.height, dz=dz, w=weights, dx=grad_x, **sizes)
