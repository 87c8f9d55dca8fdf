"""Costs: their values and their gradients with respect to the output (kernels/costs.cl), for
every cost of the table in clnet.ops.cost_table (which says what each computes and accepts).

Class labels per position: for a (batch, seq, classes) linear output and targets y of (batch,
seq) labels (held as reals), cross_entropy is softmax's of the logits at every position, averaged
over every position of the batch (PyTorch's CrossEntropyLoss on the (batch * seq, classes) view):
`value_into` and `output_delta` tell them by y's shape (`holds_labels`).

Gradients are of C, so they are averaged over the batch. Sample weights w (one per row, or one
per position with labels per position) make C = sum_i w_i C_i / batch, C_i the row's own cost
as above (Keras' weighted loss, PyTorch's unreduced loss times w, summed and divided by the
batch), and scale each row's gradient by its weight.
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import cost_table
from .arrays import check_array, launch, launch_elementwise, reduction_items
from .cost_table import ALIASES, COSTS  # noqa: F401  (the names users see, re-exported)

# Outputs up to this size: the cost's one work-group also writes the gradient (256 x 10: 26
# against 36 us); at 1000 x 10 the parallel `difference` kernel beside it won (44 against 48 us).
FUSED_DELTA = 1 << 12


def check_cost(name: str, activation: str) -> str:
    """The cost `name` means (an alias resolved) if it fits the output activation; ValueError otherwise."""
    return cost_table.check(name, activation).name


def _check(ctx, a: cla.Array, y: cla.Array, names=("a", "y")) -> np.dtype:
    dtype = ctx.real_dtype(a.dtype)
    check_array(ctx, a, names[0])
    check_array(ctx, y, names[1], dtype=dtype, shape=a.shape)
    if a.ndim != 2:
        raise ValueError(f"{names[0]} must be (batch, outputs), got shape {tuple(a.shape)}")
    return dtype


def holds_labels(a: cla.Array, y: cla.Array) -> bool:
    """Whether y holds a class label per row of a's last axis (a's shape without it, 3-D a and up)."""
    return a.ndim >= 3 and tuple(y.shape) == tuple(a.shape[:-1])


def _weights(ctx, weights: cla.Array | None, items: int, dtype, rows: int) -> dict:
    """The weighted kernels' arguments for `items` summed items of `rows` samples: w, w_per."""
    if weights is None:
        return {}
    check_array(ctx, weights, "weights", dtype=dtype)
    if weights.shape[0] != rows or items % weights.size:
        raise ValueError(f"weights must have one value per sample ({rows},) or per position, got shape "
                         f"{tuple(weights.shape)}")
    return {"w": weights, "w_per": items // weights.size}


def _label_arrays(ctx, name: str, activation: str, a: cla.Array, y: cla.Array) -> tuple:
    """(a as (positions, classes), y as (positions,), positions per sample, dtype) for labels."""
    if cost_table.find(name).name != "cross_entropy" or activation != "linear":
        raise ValueError(f"class labels per position (y of shape {tuple(y.shape)}) need cost='cross_entropy' on a "
                         f"linear output layer (logits), got {name!r} on {activation!r}")
    dtype = ctx.real_dtype(a.dtype)
    check_array(ctx, a, "a")
    check_array(ctx, y, "y", dtype=dtype)
    positions = y.size // a.shape[0]
    return a.reshape(y.size, a.shape[-1]), y.reshape(y.size), positions, dtype


def _label_value_into(ctx, name, activation, z, y, out, index, batches, delta, weights) -> cl.Event:
    z2, y1, positions, dtype = _label_arrays(ctx, name, activation, z, y)
    rows, cols = z2.shape
    if delta is not None:
        output_delta(ctx, name, z, y, delta, activation, weights)
    weighted = _weights(ctx, weights, rows, dtype, z.shape[0])
    items = reduction_items(ctx)
    kernel = ctx.kernel("costs.cl", "label_cross_entropy_sum" + "_weighted" * bool(weighted), dtype=dtype)
    return kernel(ctx.queue, (items,), (items,), x=z2, y=y1, out=out, index=index,
                  scale=1 / ((batches or z.shape[0]) * positions), rows=rows, cols=cols,
                  partial=cl.LocalMemory(items * dtype.itemsize), **weighted)


def output_delta(ctx, name: str, a: cla.Array, y: cla.Array, delta: cla.Array, activation: str = "linear",
                 weights: cla.Array | None = None) -> cl.Event:
    """delta = dC/da (elementwise costs), or dC/dz with the activation folded in (the costs from
    logits, `skips_activation_derivative`); each row's scaled by its weight when `weights` are
    given. Queued.

    Each is (a - y) times a scale (cost_table.Cost.scales); sign(a - y) for mae, (a - y) clamped
    to [-1, 1] for huber, (exp(a) - y) after a log_softmax, softmax(a) - y on logits.
    """
    cost = cost_table.find(name)
    if holds_labels(a, y):
        a2, y1, _, dtype = _label_arrays(ctx, name, activation, a, y)
        check_array(ctx, delta, "delta", dtype=dtype, shape=a.shape)
        kernel = ctx.kernel("costs.cl", "label_softmax_difference", dtype=dtype)
        event = launch(ctx, kernel, a2.shape[0], a=a2, y=y1, delta=delta.reshape(a2.shape), scale=1 / a2.shape[0],
                       rows=a2.shape[0], cols=a2.shape[1])
        return _weigh_rows(ctx, delta, weights, dtype) or event
    dtype = _check(ctx, a, y)
    check_array(ctx, delta, "delta", dtype=dtype, shape=a.shape)
    scale = cost.scales(*a.shape)[1]
    if cost.softmax_of_logits(activation, a.shape[1]):  # a row's softmax first: one work-item per row
        kernel = ctx.kernel("costs.cl", "softmax_difference", dtype=dtype)
        event = launch(ctx, kernel, a.shape[0], a=a, y=y, delta=delta, scale=scale, rows=a.shape[0],
                       cols=a.shape[1])
    else:
        kernel = ctx.kernel("costs.cl", "difference" + cost.delta_suffix(activation), dtype=dtype)
        event = launch_elementwise(ctx, kernel, a.size, dtype, a=a, y=y, delta=delta, scale=scale, n=a.size)
    return _weigh_rows(ctx, delta, weights, dtype) or event


def _weigh_rows(ctx, delta: cla.Array, weights: cla.Array | None, dtype) -> cl.Event | None:
    """delta's rows (or positions) times their weights; None without weights."""
    if weights is None:
        return None
    weighted = _weights(ctx, weights, delta.size, dtype, delta.shape[0])
    kernel = ctx.kernel("costs.cl", "scale_rows", dtype=dtype)
    return launch(ctx, kernel, delta.size, delta=delta, n=delta.size, **weighted)


def skips_activation_derivative(name: str) -> bool:
    """True when `output_delta` already includes the output activation's derivative."""
    return cost_table.find(name).from_logits


def value_into(ctx, name: str, activation: str, a: cla.Array, z: cla.Array, y: cla.Array, out: cla.Array,
               index: int = 0, batches: int | None = None, delta: cla.Array | None = None,
               weights: cla.Array | None = None) -> cl.Event:
    """Queue out[index] = the cost C of output a (logits z) for target y, not waited on.

    batches: average over this many rows instead of y's (to sum mini-batches into a mean).
    delta: also write `output_delta` there, in the same launch, when the output is small enough
    for the one work-group that sums the cost (FUSED_DELTA elements) and unweighted; else a
    second launch. weights: one per row of y (or per position), see the module's note.
    """
    cost = cost_table.check(name, activation)
    if holds_labels(a, y):  # a linear output: its outputs are the logits
        return _label_value_into(ctx, name, activation, a if z is None else z, y, out, index, batches, delta,
                                 weights)
    x = z if cost.from_logits else a  # the costs from logits read z, the elementwise ones a
    dtype = _check(ctx, x, y, ("z" if cost.from_logits else "a", "y"))
    rows, cols = x.shape
    scale, delta_scale = cost.scales(rows, cols, batches)
    kernel_name = cost.value_kernel(activation, cols)
    weighted = _weights(ctx, weights, rows if kernel_name.startswith("softmax") else rows * cols, dtype, rows)
    items = reduction_items(ctx)
    extra = {}
    if delta is not None:
        if a.size > FUSED_DELTA or weighted or cost.softmax_of_logits(activation, cols):
            output_delta(ctx, name, a, y, delta, activation, weights)
        else:
            check_array(ctx, a, "a", dtype=dtype, shape=x.shape)
            check_array(ctx, delta, "delta", dtype=dtype, shape=x.shape)
            kernel_name += "_delta" + cost.delta_suffix(activation)
            extra = {"a": a, "delta": delta, "delta_scale": delta_scale}
    kernel = ctx.kernel("costs.cl", kernel_name + "_weighted" * bool(weighted), dtype=dtype)
    return kernel(ctx.queue, (items,), (items,), x=x, y=y, out=out, index=index, scale=scale, rows=rows,
                  cols=cols, partial=cl.LocalMemory(items * dtype.itemsize), **extra, **weighted)


def value(ctx, name: str, activation: str, a: cla.Array, z: cla.Array, y: cla.Array,
          weights: cla.Array | None = None) -> float:
    """The cost C of output a (logits z) for target y. Waits for the device: once per call."""
    out = cla.empty(ctx.queue, 1, a.dtype)
    value_into(ctx, name, activation, a, z, y, out, weights=weights)
    return float(out.get()[0])


def matches_into(ctx, a: cla.Array, y: cla.Array, out: cla.Array, index: int = 0) -> cl.Event:
    """Queue out[index] = how many rows of output a predict the class of target y: the index of
    the largest entry agrees (one-hot y), or, for one output, both are on the same side of 0.5.
    With a label per position (`holds_labels`), the positions whose largest output is the label."""
    if holds_labels(a, y):
        a2, y1, _, dtype = _label_arrays(ctx, "cross_entropy", "linear", a, y)
        items = reduction_items(ctx)
        kernel = ctx.kernel("costs.cl", "label_matches", dtype=dtype)
        return kernel(ctx.queue, (items,), (items,), x=a2, y=y1, out=out, index=index, scale=1.0, rows=a2.shape[0],
                      cols=a2.shape[1], partial=cl.LocalMemory(items * dtype.itemsize))
    dtype = _check(ctx, a, y)
    rows, cols = a.shape
    items = reduction_items(ctx)
    kernel = ctx.kernel("costs.cl", "matches", dtype=dtype)
    return kernel(ctx.queue, (items,), (items,), x=a, y=y, out=out, index=index, scale=1.0, rows=rows, cols=cols,
                  partial=cl.LocalMemory(items * dtype.itemsize))
