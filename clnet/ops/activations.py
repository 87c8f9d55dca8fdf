"""Activations and their derivatives (kernels/activations.cl holds the one table of them).

All are elementwise except softmax, which works on each row of a (batch, outputs) array.
"""

from __future__ import annotations

import pyopencl as cl
import pyopencl.array as cla

from ..runtime.programs import Templates
from .arrays import check_array, launch, vector_width

# The names come from the template's own table, so the two cannot disagree.
ELEMENTWISE: tuple[str, ...] = tuple(Templates().module("activations.cl").ACTIVATIONS)
ACTIVATIONS: tuple[str, ...] = (*ELEMENTWISE, "softmax")


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
    launch(ctx, kernel, _work_items(name, z), z=z, a=out, **_sizes(name, z))
    return out


def _work_items(name: str, a: cla.Array) -> int:
    """One per vector of elements (kernels/vectors.cl), or one per row for softmax."""
    return _rows(a) if name == "softmax" else -(-a.size // vector_width(a.dtype))


def _rows(a: cla.Array) -> int:
    if a.ndim != 2:
        raise ValueError(f"softmax works on the rows of a (batch, outputs) array, got shape {tuple(a.shape)}")
    return a.shape[0]


def _sizes(name: str, a: cla.Array) -> dict:
    return {"rows": _rows(a), "cols": a.shape[1]} if name == "softmax" else {"n": a.size}


def backward(ctx, name: str, a: cla.Array, grad: cla.Array) -> cl.Event:
    """grad *= f'(z), with f' computed from the activation's output a = f(z). Queued."""
    check_activation(name)
    dtype = ctx.real_dtype(a.dtype)
    check_array(ctx, a, "a")
    check_array(ctx, grad, "grad", dtype=dtype, shape=a.shape)
    kernel = ctx.kernel("activations.cl", f"backward_{name}", dtype=dtype)
    return launch(ctx, kernel, _work_items(name, a), a=a, g=grad, **_sizes(name, a))
