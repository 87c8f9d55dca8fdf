"""Costs: their values and their gradients with respect to the output (kernels/costs.cl).

    quadratic      C = sum((a - y)**2) / (2 * batch)                  any output activation
    cross_entropy  C = -sum(y ln a + (1 - y) ln(1 - a)) / batch       sigmoid outputs

Gradients are of C, so they are averaged over the batch.
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .launch import check_array, element_offset, launch

COSTS = ("quadratic", "cross_entropy")
REDUCE_ITEMS = 256


def check_cost(name: str, activation: str) -> str:
    """`name` if it is a known cost that fits the output activation; ValueError otherwise."""
    if name not in COSTS:
        raise ValueError(f"unknown cost {name!r}; choose one of {', '.join(COSTS)}")
    if name == "cross_entropy" and activation != "sigmoid":
        raise ValueError(f"the cross_entropy cost needs a sigmoid output layer, got {activation!r}")
    return name


def _check(ctx, a: cla.Array, y: cla.Array) -> np.dtype:
    dtype = ctx.real_dtype(a.dtype)
    check_array(ctx, a, "a")
    check_array(ctx, y, "y", dtype=dtype, shape=a.shape)
    if a.ndim != 2:
        raise ValueError(f"a must be (batch, outputs), got shape {tuple(a.shape)}")
    return dtype


def output_delta(ctx, name: str, a: cla.Array, y: cla.Array, delta: cla.Array) -> cl.Event:
    """delta = dC/da (quadratic), or dC/dz with the sigmoid folded in (cross_entropy). Queued.

    Both are (a - y) / batch; cross_entropy's is already the gradient of the sigmoid's input,
    so the network skips the output activation's derivative (`skips_activation_derivative`).
    """
    dtype = _check(ctx, a, y)
    check_array(ctx, delta, "delta", dtype=dtype, shape=a.shape)
    kernel = ctx.kernel("costs.cl", "difference", dtype=dtype)
    return launch(ctx, kernel, a.size, a.base_data, element_offset(a), y.base_data, element_offset(y),
                  delta.base_data, element_offset(delta), dtype.type(1 / a.shape[0]), np.uint32(a.size))


def skips_activation_derivative(name: str) -> bool:
    """True when `output_delta` already includes the output activation's derivative."""
    return name == "cross_entropy"


def value(ctx, name: str, a: cla.Array, y: cla.Array) -> float:
    """The cost C of output a for target y (waits for the device: call it once, not per step)."""
    if name not in COSTS:
        raise ValueError(f"unknown cost {name!r}; choose one of {', '.join(COSTS)}")
    dtype = _check(ctx, a, y)
    scale = 1 / (2 * a.shape[0]) if name == "quadratic" else 1 / a.shape[0]
    out = cla.empty(ctx.queue, 1, dtype)
    items = min(REDUCE_ITEMS, 1 << (ctx.info.max_work_group_size.bit_length() - 1))
    kernel = ctx.kernel("costs.cl", f"{name}_sum", dtype=dtype)
    kernel(ctx.queue, (items,), (items,), a.base_data, element_offset(a), y.base_data, element_offset(y),
           out.base_data, dtype.type(scale), np.uint32(a.size), cl.LocalMemory(items * dtype.itemsize))
    return float(out.get()[0])
