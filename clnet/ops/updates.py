"""Optimizer steps on device parameters (kernels/updates.cl): one kernel launch per array."""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array, group_sums, launch_elementwise


def _checked(ctx, w: cla.Array, g: cla.Array, *state: cla.Array) -> np.dtype:
    dtype = ctx.real_dtype(w.dtype)
    check_array(ctx, w, "w")
    for name, array in (("g", g), *((f"state{i}", s) for i, s in enumerate(state))):
        check_array(ctx, array, name, dtype=dtype, shape=w.shape)
    return dtype


def _keep(ctx, w: cla.Array, kept: cla.Array | None) -> dict:
    """The kernel's `kept` argument: every update can also save w as it was before the step."""
    if kept is None:
        return {}
    check_array(ctx, kept, "kept", dtype=w.dtype, shape=w.shape)
    return {"kept": kept}


def sgd_step(ctx, w: cla.Array, g: cla.Array, learning_rate: float, weight_decay: float = 0.0,
             kept: cla.Array | None = None) -> cl.Event:
    """w -= learning_rate * (g + weight_decay * w), elementwise. Queued, not waited on.

    kept: also copy w as it was before the step there (every step function takes it)."""
    dtype = _checked(ctx, w, g)
    extra = _keep(ctx, w, kept)
    kernel = ctx.kernel("updates.cl", "sgd", dtype=dtype, keep=bool(extra))
    return launch_elementwise(ctx, kernel, w.size, dtype, w=w, g=g, learning_rate=learning_rate,
                              weight_decay=weight_decay, n=w.size, **extra)


def momentum_step(ctx, w: cla.Array, g: cla.Array, buffer: cla.Array, learning_rate: float, momentum: float,
                  weight_decay: float, nesterov: bool, kept: cla.Array | None = None) -> cl.Event:
    """PyTorch's SGD step with momentum (see kernels/updates.cl); buffer is the velocity."""
    dtype = _checked(ctx, w, g, buffer)
    extra = _keep(ctx, w, kept)
    kernel = ctx.kernel("updates.cl", "sgd_momentum", dtype=dtype, keep=bool(extra))
    return launch_elementwise(ctx, kernel, w.size, dtype, w=w, g=g, b=buffer, learning_rate=learning_rate,
                              momentum=momentum, weight_decay=weight_decay, nesterov=int(nesterov), n=w.size,
                              **extra)


def adam_step(ctx, w: cla.Array, g: cla.Array, m: cla.Array, v: cla.Array, *, step: int, learning_rate: float,
              beta1: float, beta2: float, eps: float, weight_decay: float, kept: cla.Array | None = None,
              decoupled: bool = False) -> cl.Event:
    """PyTorch's Adam step number `step` (from 1): m and v are the moment estimates; decoupled:
    AdamW's (w shrinks by 1 - learning_rate * weight_decay instead of decay in the gradient)."""
    dtype = _checked(ctx, w, g, m, v)
    extra = _keep(ctx, w, kept)
    kernel = ctx.kernel("updates.cl", "adam", dtype=dtype, keep=bool(extra))
    step_size = learning_rate / (1 - beta1**step)
    sqrt_bias2 = (1 - beta2**step) ** 0.5
    return launch_elementwise(ctx, kernel, w.size, dtype, w=w, g=g, m=m, v=v, step_size=step_size, beta1=beta1,
                              beta2=beta2, eps=eps, sqrt_bias2=sqrt_bias2,
                              weight_decay=0.0 if decoupled else weight_decay,
                              shrink=1 - learning_rate * weight_decay if decoupled else 1.0, n=w.size,
                              **extra)


def rmsprop_step(ctx, w: cla.Array, g: cla.Array, v: cla.Array, a: cla.Array | None, b: cla.Array | None, *,
                 learning_rate: float, alpha: float, eps: float, weight_decay: float, momentum: float,
                 kept: cla.Array | None = None) -> cl.Event:
    """PyTorch's RMSprop step (see kernels/updates.cl): v the mean square, a the mean gradient
    (centered, else None), b the momentum buffer (momentum > 0, else None)."""
    state = {name: s for name, s in (("a", a), ("b", b)) if s is not None}
    dtype = _checked(ctx, w, g, v, *state.values())
    if ("b" in state) != bool(momentum):
        raise ValueError("rmsprop_step takes a momentum buffer b exactly when momentum > 0")
    extra = _keep(ctx, w, kept)
    kernel = ctx.kernel("updates.cl", "rmsprop", dtype=dtype, keep=bool(extra), centered="a" in state,
                        momentum="b" in state)
    return launch_elementwise(ctx, kernel, w.size, dtype, w=w, g=g, v=v, learning_rate=learning_rate, alpha=alpha,
                              eps=eps, weight_decay=weight_decay, momentum=momentum, n=w.size, **state, **extra)


def clip_by_norm(ctx, g: cla.Array, max_norm: float, partial: cla.Array | None = None) -> cl.Event:
    """Scale g by max_norm / (norm + 1e-6) where its (2-)norm exceeds max_norm
    (torch.nn.utils.clip_grad_norm_ over every gradient at once, g being the flat gradient
    buffer): the norm's partial sums in one pass, then the scaling, without a wait. partial:
    where the sums go (arrays.sum_groups(ctx, g.size) of them; kept by the caller)."""
    dtype = ctx.real_dtype(g.dtype)
    check_array(ctx, g, "g")
    partial = group_sums(ctx, "square_sums", g, partial)
    kernel = ctx.kernel("updates.cl", "clip_scale", dtype=dtype, keep=False)
    return launch_elementwise(ctx, kernel, g.size, dtype, g=g, partial_sums=partial, groups=partial.size,
                              max_norm=max_norm, n=g.size)
