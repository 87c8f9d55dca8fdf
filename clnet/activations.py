"""Activations and their derivatives (kernels/activations.cl holds the one table of them)."""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .launch import check_array, element_offset, launch
from .programs import Templates

# The names come from the template's own table, so the two cannot disagree.
ACTIVATIONS: tuple[str, ...] = tuple(Templates().module("activations.cl").ACTIVATIONS)


def check_activation(name: str) -> str:
    """`name` if it is a known activation; ValueError listing the known ones otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return name


def forward(ctx, name: str, z: cla.Array, out: cla.Array | None = None) -> cla.Array:
    """out = f(z) elementwise (out=z works in place); returns out. Queued, not waited on."""
    check_activation(name)
    dtype = ctx.real_dtype(z.dtype)
    check_array(ctx, z, "z")
    out = z if out is None else check_array(ctx, out, "out", dtype=dtype, shape=z.shape)
    kernel = ctx.kernel("activations.cl", f"forward_{name}", dtype=dtype)
    launch(ctx, kernel, z.size, z.base_data, element_offset(z), out.base_data, element_offset(out),
           np.uint32(z.size))
    return out


def backward(ctx, name: str, a: cla.Array, grad: cla.Array) -> cl.Event:
    """grad *= f'(z), with f' computed from the activation's output a = f(z). Queued."""
    check_activation(name)
    dtype = ctx.real_dtype(a.dtype)
    check_array(ctx, a, "a")
    check_array(ctx, grad, "grad", dtype=dtype, shape=a.shape)
    kernel = ctx.kernel("activations.cl", f"backward_{name}", dtype=dtype)
    return launch(ctx, kernel, a.size, a.base_data, element_offset(a), grad.base_data, element_offset(grad),
                  np.uint32(a.size))
