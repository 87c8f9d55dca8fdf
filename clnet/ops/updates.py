"""Optimizer steps on device parameters (kernels/updates.cl): one kernel launch per array."""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array, launch_elementwise


def _checked(ctx, w: cla.Array, g: cla.Array, *state: cla.Array) -> np.dtype:
    dtype = ctx.real_dtype(w.dtype)
    check_array(ctx, w, "w")
    for name, array in (("g", g), *((f"state{i}", s) for i, s in enumerate(state))):
        check_array(ctx, array, name, dtype=dtype, shape=w.shape)
    return dtype


def sgd_step(ctx, w: cla.Array, g: cla.Array, learning_rate: float, weight_decay: float = 0.0) -> cl.Event:
    """w -= learning_rate * (g + weight_decay * w), elementwise. Queued, not waited on."""
    dtype = _checked(ctx, w, g)
    kernel = ctx.kernel("updates.cl", "sgd", dtype=dtype)
    return launch_elementwise(ctx, kernel, w.size, dtype, w=w, g=g, learning_rate=learning_rate,
                              weight_decay=weight_decay, n=w.size)


def momentum_step(ctx, w: cla.Array, g: cla.Array, buffer: cla.Array, learning_rate: float, momentum: float,
                  weight_decay: float, nesterov: bool) -> cl.Event:
    """PyTorch's SGD step with momentum (see kernels/updates.cl); buffer is the velocity."""
    dtype = _checked(ctx, w, g, buffer)
    kernel = ctx.kernel("updates.cl", "sgd_momentum", dtype=dtype)
    return launch_elementwise(ctx, kernel, w.size, dtype, w=w, g=g, b=buffer, learning_rate=learning_rate,
                              momentum=momentum, weight_decay=weight_decay, nesterov=int(nesterov), n=w.size)


def adam_step(ctx, w: cla.Array, g: cla.Array, m: cla.Array, v: cla.Array, *, step: int, learning_rate: float,
              beta1: float, beta2: float, eps: float, weight_decay: float) -> cl.Event:
    """PyTorch's Adam step number `step` (from 1): m and v are the moment estimates."""
    dtype = _checked(ctx, w, g, m, v)
    kernel = ctx.kernel("updates.cl", "adam", dtype=dtype)
    step_size = learning_rate / (1 - beta1**step)
    sqrt_bias2 = (1 - beta2**step) ** 0.5
    return launch_elementwise(ctx, kernel, w.size, dtype, w=w, g=g, m=m, v=v, step_size=step_size, beta1=beta1,
                              beta2=beta2, eps=eps, sqrt_bias2=sqrt_bias2, weight_decay=weight_decay, n=w.size)
