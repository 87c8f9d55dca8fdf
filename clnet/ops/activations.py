"""Activations and their derivatives (kernels/activations.cl holds the one table of them).

All are elementwise except softmax and log_softmax (`ROWWISE`), which work on each row of a
(batch, outputs) array. An
activation is named by a string, or by (name, alpha) for the parametrized ones: leaky_relu
(the slope below 0, default 0.01) and elu (the scale below 0, default 1.0). The derivative of
most is computed from the output a; gelu's, gelu_tanh's and silu's from the input z
(`reads(name)`), which the layers keep for them.
"""

from __future__ import annotations

import math
import numbers

import pyopencl as cl
import pyopencl.array as cla

from ..runtime.programs import Templates
from .arrays import check_array, launch, row_launch, vector_width

# The names, what each derivative reads and the parameters' defaults come from the template's own
# table, so the two cannot disagree.
_TABLE = Templates().module("activations.cl").ACTIVATIONS
ELEMENTWISE: tuple[str, ...] = tuple(_TABLE)
ROWWISE: tuple[str, ...] = ("softmax", "log_softmax")
ACTIVATIONS: tuple[str, ...] = (*ELEMENTWISE, *ROWWISE)
DEFAULT_ALPHA: dict[str, float] = {name: entry[3] for name, entry in _TABLE.items() if entry[3] is not None}


def check_activation(name: str) -> str:
    """`name` if it is a known activation; ValueError listing the known ones otherwise."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}, or (name, alpha) "
                         f"for {', '.join(DEFAULT_ALPHA)}")
    return name


def parse(spec) -> tuple[str, float | None]:
    """(name, alpha) of an activation given as a name or as (name, alpha); alpha is the default
    for a parametrized activation given by name, None for the others. ValueError when unknown."""
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2 or spec[0] not in DEFAULT_ALPHA:
            raise ValueError(f"an activation with a parameter is (name, alpha) with name one of "
                             f"{', '.join(DEFAULT_ALPHA)}, got {spec!r}")
        name, alpha = spec
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha < 0:
            # below 0 the output would no longer tell which side of 0 the input was on
            raise ValueError(f"{name}'s alpha must be a finite number >= 0, got {alpha!r}")
        return name, float(alpha)
    name = check_activation(spec)
    return name, DEFAULT_ALPHA.get(name)


def describe(name: str, alpha: float | None = None) -> str | tuple[str, float]:
    """The short form of an activation, as users write it: the name, or (name, alpha) when alpha
    is not the default."""
    return name if alpha is None or alpha == DEFAULT_ALPHA.get(name) else (name, alpha)


def reads(name: str) -> str:
    """What the derivative of `name` is computed from: "a" (the output) or "z" (the input)."""
    return "a" if name in ROWWISE else _TABLE[check_activation(name)][2]


def alpha_argument(name: str, alpha: float | None) -> dict:
    """The act_alpha argument of the kernels of a parametrized activation ({} for the others)."""
    if name not in DEFAULT_ALPHA:
        return {}
    return {"act_alpha": DEFAULT_ALPHA[name] if alpha is None else alpha}


def forward(ctx, name: str, z: cla.Array, out: cla.Array | None = None, alpha: float | None = None) -> cla.Array:
    """out = f(z) elementwise (out=z works in place); returns out. Queued, not waited on."""
    check_activation(name)
    dtype = ctx.real_dtype(z.dtype)
    check_array(ctx, z, "z")
    out = z if out is None else check_array(ctx, out, "out", dtype=dtype, shape=z.shape)
    kernel = ctx.kernel("activations.cl", f"forward_{name}", dtype=dtype)
    launch(ctx, kernel, _work_items(name, z), z=z, a=out, **_sizes(name, z), **alpha_argument(name, alpha))
    return out


def forward_with_bias(ctx, name: str, z: cla.Array, b: cla.Array, out: cla.Array, alpha: float | None = None
                      ) -> cla.Array:
    """z += b by column, then out = f(z), in one pass over a contiguous (rows, cols) z (out may
    be z): the epilogue of a product clnet's kernels did not compute (CLBlast). An elementwise
    activation only. Queued; returns out."""
    if check_activation(name) not in ELEMENTWISE:
        raise ValueError(f"forward_with_bias takes an elementwise activation, not {name!r}")
    dtype = ctx.real_dtype(z.dtype)
    check_array(ctx, z, "z")
    check_array(ctx, out, "out", dtype=dtype, shape=z.shape)
    check_array(ctx, b, "b", dtype=dtype, shape=z.shape[1:])
    rows, cols = z.shape  # contiguous: check_array says so
    kernel = ctx.kernel("activations.cl", f"bias_forward_{name}", dtype=dtype)
    kernel(ctx.queue, *row_launch(cols, rows, dtype), z=z, b=b, a=out, rows=rows, cols=cols,
           **alpha_argument(name, alpha))
    return out


def _work_items(name: str, a: cla.Array) -> int:
    """One per vector of elements (kernels/vectors.cl), or one per row for softmax and log_softmax."""
    return _rows(a) if name in ROWWISE else -(-a.size // vector_width(a.dtype))


def _rows(a: cla.Array) -> int:
    if a.ndim != 2:
        raise ValueError(f"softmax and log_softmax work on the rows of a (batch, outputs) array, got shape "
                         f"{tuple(a.shape)}")
    return a.shape[0]


def _sizes(name: str, a: cla.Array) -> dict:
    return {"rows": _rows(a), "cols": a.shape[1]} if name in ROWWISE else {"n": a.size}


def backward(ctx, name: str, saved: cla.Array, grad: cla.Array, alpha: float | None = None) -> cl.Event:
    """grad *= f'(z), with f' computed from what `reads(name)` says: the activation's output a,
    or its input z, passed as `saved`. Queued."""
    source = reads(name)
    dtype = ctx.real_dtype(saved.dtype)
    check_array(ctx, saved, source)
    check_array(ctx, grad, "grad", dtype=dtype, shape=saved.shape)
    kernel = ctx.kernel("activations.cl", f"backward_{name}", dtype=dtype)
    return launch(ctx, kernel, _work_items(name, saved), g=grad, **{source: saved}, **_sizes(name, saved),
                  **alpha_argument(name, alpha))
