"""A fully-connected layer's passes as fused kernels where clnet's GEMM runs the products.

    forward:  out = f(x @ W.T + b), z = x @ W.T + b kept when asked for (the output layer)
    backward: delta *= f'(a), then db = delta summed over the batch, in one pass

Fused, the forward pass applies the bias and the activation while the tile of the product is
still in registers (one launch instead of three, and no pass over z); the backward pass reads
delta once for both. clnet's GPU kernel (ops/local_gemm.py) fuses the forward pass the same way; with CLBlast running
the products, the unfused kernels run.
"""

from __future__ import annotations

import pyopencl.array as cla

from . import activations, bias, blas, local_gemm, tiled_gemm
from .arrays import check_array, vector_width

BACKWARD_GROUP = 8
# Above this many elements the fused backward pass lost to the two unfused ones (1000 x 5000:
# 18.2 against 14.9 ms; 1000 x 1000: 1.0 against 1.9 ms; bench/bench_fusion.py), its column walk
# being slower than their contiguous passes once delta is far larger than the caches.
FUSED_BACKWARD = 1 << 21
# 64 x 784 -> 256: 257 us transposed, 344 us not; at 256 x 784 -> 512 and below 4x, level
TRANSPOSE_RATIO = 4


def transposes(batch: int, outputs: int, activation: str) -> bool:
    """Whether the fused forward pass computes out.T = W @ x.T (packing x, not W): for layers of
    at least TRANSPOSE_RATIO times as many outputs as the batch has rows (not softmax, which
    needs whole rows of out in a tile)."""
    return batch * TRANSPOSE_RATIO <= outputs and activation not in activations.ROWWISE


def fuses_forward(ctx, dtype, activation: str, m: int, n: int, k: int) -> bool:
    """True when `forward` runs as one fused GEMM for this product (clnet's kernels, and for
    softmax a row that fits in one tile of the CPU kernel; log_softmax runs its own kernel after
    the product)."""
    chosen = blas.settings(ctx, dtype)
    backend = chosen.backend(m, n, k)
    if backend == "clnet_gpu":
        return activation not in activations.ROWWISE
    if backend != "clnet":
        return False
    width = chosen.tiles.width or vector_width(dtype)
    return activation not in activations.ROWWISE or (activation == "softmax" and n <= 2 * width)


def forward(ctx, x: cla.Array, weights: cla.Array, b: cla.Array, activation: str, out: cla.Array,
            z: cla.Array | None = None, alpha: float | None = None) -> cla.Array:
    """out = f(x @ weights.T + b) for x (batch, inputs), weights (outputs, inputs), b (outputs,);
    z, when given, keeps x @ weights.T + b; alpha: the activation's parameter (leaky_relu, elu).
    Queued; returns out."""
    m, k = x.shape
    n = weights.shape[0]
    if k == 0 or not fuses_forward(ctx, out.dtype, activation, m, n, k):
        target = out if z is None else z
        blas.gemm(ctx, x, weights, target, trans_b=True)
        if activation in activations.ROWWISE:
            bias.add_bias(ctx, target, b)
            return activations.forward(ctx, activation, target, out=out, alpha=alpha)
        return activations.forward_with_bias(ctx, activation, target, b, out, alpha)  # one pass, not two
    dtype = blas.check_product(ctx, {"a": x, "b": weights, "c": out})
    check_array(ctx, b, "b", dtype=dtype, shape=(n,))
    if z is not None:
        check_array(ctx, z, "z", dtype=dtype, shape=out.shape)
    if out.shape != (m, n) or weights.shape[1] != k:
        raise ValueError(f"a layer maps x (batch, {weights.shape[1]}) to out (batch, {n}); "
                         f"got x {tuple(x.shape)}, weights {tuple(weights.shape)}, out {tuple(out.shape)}")
    if m == 0:
        return out
    layouts = (blas.layout(x, "x"), blas.layout(weights, "weights"), blas.layout(out, "out"))
    chosen = blas.settings(ctx, dtype)
    one, zero, tiles = dtype.type(1), dtype.type(0), chosen.tiles
    if chosen.backend(m, n, k) == "clnet_gpu":
        local_gemm.gemm(ctx, x, weights, out, m=m, n=n, k=k, trans_a=False, trans_b=True, layouts=layouts,
                        alpha=one, beta=zero, tiles=blas.local_tiles(ctx, dtype),
                        epilogue=tiled_gemm.Epilogue(b, activation, z, alpha=alpha))
    elif transposes(m, n, activation):  # out.T = W @ x.T: pack the smaller x.T instead of W.T
        tiled_gemm.gemm(ctx, weights, x, out, m=n, n=m, k=k, trans_a=False, trans_b=True, layouts=(
            layouts[1], layouts[0], layouts[2]), alpha=one, beta=zero, params=tiles,
            epilogue=tiled_gemm.Epilogue(b, activation, z, transposed=True, alpha=alpha))
    else:
        tiled_gemm.gemm(ctx, x, weights, out, m=m, n=n, k=k, trans_a=False, trans_b=True, layouts=layouts,
                        alpha=one, beta=zero, params=tiles, epilogue=tiled_gemm.Epilogue(b, activation, z, alpha=alpha))
    return out


def backward_bias(ctx, activation: str | None, saved: cla.Array, delta: cla.Array, grad_bias: cla.Array,
                  alpha: float | None = None) -> None:
    """delta *= f'(z) (dC/d(out) -> dC/dz; activation None: delta is dC/dz already), and
    grad_bias = delta summed over its rows, in one pass up to FUSED_BACKWARD elements. Queued.

    saved: what the derivative reads (activations.reads): the output a, or the logits z."""
    if activation == "linear":
        activation = None  # f' = 1: nothing to multiply
    # softmax and log_softmax work on rows: their own kernel first; so do large layers, where two
    # passes win, and GPUs, whose column sums reduce chunks of rows in parallel (bias.column_sums)
    # and derivatives that read z (gelu, silu: erf and exp per element), which lost fused at
    # every size measured (2048 x 512: 4.3 against 3.5 ms)
    if activation in activations.ROWWISE or (activation is not None and (
            delta.size > FUSED_BACKWARD or ctx.info.type != "CPU" or activations.reads(activation) == "z")):
        activations.backward(ctx, activation, saved, delta, alpha)
        activation = None
    if activation is None:
        bias.bias_gradient(ctx, delta, grad_bias)
        return
    dtype = ctx.real_dtype(delta.dtype)
    check_array(ctx, delta, "delta")
    check_array(ctx, grad_bias, "grad_bias", dtype=dtype, shape=delta.shape[1:])
    source = activations.reads(activation)
    check_array(ctx, saved, source, dtype=dtype, shape=delta.shape)
    rows, cols = delta.shape
    kernel = ctx.kernel("activations.cl", f"backward_bias_{activation}", dtype=dtype)
    # one work-item per vector of columns, walking the rows: small groups, so that a layer of a
    # few hundred units still spreads over every core
    items = -(-cols // vector_width(dtype))
    local = min(BACKWARD_GROUP, ctx.info.max_work_group_size)
    kernel(ctx.queue, (-(-items // local) * local,), (local,), g=delta, db=grad_bias, rows=rows, cols=cols,
           **{source: saved}, **activations.alpha_argument(activation, alpha))
