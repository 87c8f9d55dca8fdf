"""Costs: their values and their gradients with respect to the output (kernels/costs.cl).

    quadratic      C = sum((a - y)**2) / (2 * batch)              any output activation
    mse            C = sum((a - y)**2) / (batch * outputs)        any output activation (the mean
                                                                  over every element: Keras' "mse",
                                                                  PyTorch's MSELoss())
    mae            C = sum(|a - y|) / (batch * outputs)           any (PyTorch's L1Loss(), Keras' "mae";
                                                                  its gradient 0 where a = y)
    huber          C = sum(h(a - y)) / (batch * outputs)          any; h(d) = d**2 / 2 for |d| <= 1,
                                                                  |d| - 1/2 beyond (PyTorch's
                                                                  HuberLoss(delta=1) = SmoothL1Loss())
    cross_entropy  C = -sum(y ln a + (1 - y) ln(1 - a)) / batch   after a sigmoid
                   C = -sum(y ln a) / batch                       after a softmax (rows of y
                                                                  one-hot or probabilities)
                   C = -sum(y a) / batch                          after a log_softmax (a = ln p:
                                                                  PyTorch's NLLLoss)
                   on a linear output, the outputs are logits z:  softmax's from z (PyTorch's
                                                                  CrossEntropyLoss), sigmoid's for
                                                                  one output (BCEWithLogitsLoss)

Class labels per position: for a (batch, seq, classes) linear output and targets y of (batch,
seq) labels (held as reals), cross_entropy is softmax's of the logits at every position, averaged
over every position of the batch (PyTorch's CrossEntropyLoss on the (batch * seq, classes) view):
`value_into` and `output_delta` tell them by y's shape (`holds_labels`).

Gradients are of C, so they are averaged over the batch. Aliases (`ALIASES`) take the names users
know: "mean_squared_error"; "mean_absolute_error" and "l1"; "huber_loss" and "smooth_l1";
"binary_cross_entropy", "bce" and "log_loss" (sigmoid: the sum over
outputs, mean over the batch, which is PyTorch's BCELoss for one output) and
"categorical_cross_entropy" (softmax: PyTorch's CrossEntropyLoss). The cross-entropies' values come from
the logits z (the output layer's input to its activation), which keeps them exact for any z.
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .arrays import check_array, launch, launch_elementwise, reduction_items

COSTS = ("quadratic", "mse", "mae", "huber", "cross_entropy")
ALIASES = {"mean_squared_error": "mse", "mean_absolute_error": "mae", "l1": "mae", "huber_loss": "huber",
           "smooth_l1": "huber", "binary_cross_entropy": "cross_entropy", "bce": "cross_entropy",
           "log_loss": "cross_entropy", "categorical_cross_entropy": "cross_entropy"}
ELEMENT_MEANS = ("mse", "mae", "huber")  # averaged over every element, not only the batch
# each elementwise cost: (its value's kernel in costs.cl, the suffix of its delta kernels)
ELEMENTWISE = {"quadratic": ("quadratic_sum", ""), "mse": ("quadratic_sum", ""), "mae": ("absolute_sum", "_sign"),
               "huber": ("huber_sum", "_clamp")}
CROSS_ENTROPY_ACTIVATIONS = ("sigmoid", "softmax", "log_softmax", "linear")  # linear: logits
# Outputs up to this size: the cost's one work-group also writes the gradient (256 x 10: 26
# against 36 us); at 1000 x 10 the parallel `difference` kernel beside it won (44 against 48 us).
FUSED_DELTA = 1 << 12


def check_cost(name: str, activation: str) -> str:
    """The cost `name` means (an alias resolved) if it fits the output activation; ValueError otherwise."""
    if not isinstance(name, str) or ALIASES.get(name, name) not in COSTS:
        raise ValueError(f"unknown cost {name!r}; choose one of {', '.join(COSTS)} "
                         f"(or their aliases {', '.join(ALIASES)})")
    name = ALIASES.get(name, name)
    if name == "cross_entropy" and activation not in CROSS_ENTROPY_ACTIVATIONS:
        raise ValueError(f"the cross_entropy cost needs a sigmoid, softmax or log_softmax output layer, or a linear "
                         f"one (its outputs are then logits), got {activation!r}")
    return name


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


def _label_arrays(ctx, name: str, activation: str, a: cla.Array, y: cla.Array) -> tuple:
    """(a as (positions, classes), y as (positions,), positions per sample, dtype) for labels."""
    if ALIASES.get(name, name) != "cross_entropy" or activation != "linear":
        raise ValueError(f"class labels per position (y of shape {tuple(y.shape)}) need cost='cross_entropy' on a "
                         f"linear output layer (logits), got {name!r} on {activation!r}")
    dtype = ctx.real_dtype(a.dtype)
    check_array(ctx, a, "a")
    check_array(ctx, y, "y", dtype=dtype)
    positions = y.size // a.shape[0]
    return a.reshape(y.size, a.shape[-1]), y.reshape(y.size), positions, dtype


def _label_value_into(ctx, name, activation, z, y, out, index, batches, delta) -> cl.Event:
    z2, y1, positions, dtype = _label_arrays(ctx, name, activation, z, y)
    rows, cols = z2.shape
    if delta is not None:
        output_delta(ctx, name, z, y, delta, activation)
    items = reduction_items(ctx)
    kernel = ctx.kernel("costs.cl", "label_cross_entropy_sum", dtype=dtype)
    return kernel(ctx.queue, (items,), (items,), x=z2, y=y1, out=out, index=index,
                  scale=1 / ((batches or z.shape[0]) * positions), rows=rows, cols=cols,
                  partial=cl.LocalMemory(items * dtype.itemsize))


def scales(name: str, rows: int, cols: int, batches: int | None = None) -> tuple[float, float]:
    """(value scale, gradient scale): C = scale * sum of the terms, delta = (a - y) * gradient scale;
    batches: the rows the value is averaged over (a mean of mini-batches) when not `rows`."""
    mean = batches or rows
    if name == "quadratic":
        return 1 / (2 * mean), 1 / rows
    if name == "mse":
        return 1 / (mean * cols), 2 / (rows * cols)
    if name in ELEMENT_MEANS:
        return 1 / (mean * cols), 1 / (rows * cols)
    return 1 / mean, 1 / rows


def output_delta(ctx, name: str, a: cla.Array, y: cla.Array, delta: cla.Array, activation: str = "linear"
                 ) -> cl.Event:
    """delta = dC/da (quadratic, mse, mae, huber), or dC/dz with the activation folded in
    (cross_entropy). Queued.

    Each is (a - y) times a scale (`scales`); sign(a - y) for mae, (a - y) clamped to [-1, 1] for
    huber, (exp(a) - y) for cross_entropy after a log_softmax. cross_entropy's is already the
    gradient of the output layer's input, so the network skips the activation's derivative
    (`skips_activation_derivative`).
    """
    if holds_labels(a, y):
        a2, y1, _, dtype = _label_arrays(ctx, name, activation, a, y)
        check_array(ctx, delta, "delta", dtype=dtype, shape=a.shape)
        kernel = ctx.kernel("costs.cl", "label_softmax_difference", dtype=dtype)
        return launch(ctx, kernel, a2.shape[0], a=a2, y=y1, delta=delta.reshape(a2.shape), scale=1 / a2.shape[0],
                      rows=a2.shape[0], cols=a2.shape[1])
    dtype = _check(ctx, a, y)
    check_array(ctx, delta, "delta", dtype=dtype, shape=a.shape)
    scale = scales(ALIASES.get(name, name), *a.shape)[1]
    if _softmax_of_logits(name, activation, a.shape[1]):  # a row's softmax first: one work-item per row
        kernel = ctx.kernel("costs.cl", "softmax_difference", dtype=dtype)
        return launch(ctx, kernel, a.shape[0], a=a, y=y, delta=delta, scale=scale, rows=a.shape[0], cols=a.shape[1])
    kernel = ctx.kernel("costs.cl", "difference" + _delta_suffix(name, activation), dtype=dtype)
    return launch_elementwise(ctx, kernel, a.size, dtype, a=a, y=y, delta=delta, scale=scale, n=a.size)


def _softmax_of_logits(name: str, activation: str, cols: int) -> bool:
    """Cross-entropy on the logits of a linear output of several columns: softmax's."""
    return ALIASES.get(name, name) == "cross_entropy" and activation == "linear" and cols > 1


def _delta_suffix(name: str, activation: str) -> str:
    """The suffix of the kernels that write this cost's delta (kernels/costs.cl's DELTAS):
    cross_entropy's after a log_softmax is p - y with p = exp(a), on one logit sigmoid(a) - y."""
    name = ALIASES.get(name, name)
    if name in ELEMENTWISE:
        return ELEMENTWISE[name][1]
    return {"log_softmax": "_exp", "linear": "_sigmoid"}.get(activation, "")


def skips_activation_derivative(name: str) -> bool:
    """True when `output_delta` already includes the output activation's derivative."""
    return ALIASES.get(name, name) == "cross_entropy"


def value_into(ctx, name: str, activation: str, a: cla.Array, z: cla.Array, y: cla.Array, out: cla.Array,
               index: int = 0, batches: int | None = None, delta: cla.Array | None = None) -> cl.Event:
    """Queue out[index] = the cost C of output a (logits z) for target y, not waited on.

    batches: average over this many rows instead of y's (to sum mini-batches into a mean).
    delta: also write `output_delta` there, in the same launch, when the output is small enough
    for the one work-group that sums the cost (FUSED_DELTA elements); else a second launch.
    """
    name = check_cost(name, activation)
    if holds_labels(a, y):  # a linear output: its outputs are the logits
        return _label_value_into(ctx, name, activation, a if z is None else z, y, out, index, batches, delta)
    elementwise = name in ELEMENTWISE  # from the output a; the cross-entropies from the logits z
    x = a if elementwise else z
    dtype = _check(ctx, x, y, ("a" if elementwise else "z", "y"))
    rows, cols = x.shape
    scale, delta_scale = scales(name, rows, cols, batches)
    # log_softmax's cross-entropy is softmax's, from the same logits; a linear output's are logits
    logits_of = {"log_softmax": "softmax", "linear": "softmax" if cols > 1 else "sigmoid"}.get(activation, activation)
    kernel_name = ELEMENTWISE[name][0] if elementwise else f"{logits_of}_cross_entropy_sum"
    items = reduction_items(ctx)
    extra = {}
    if delta is not None:
        if a.size > FUSED_DELTA or _softmax_of_logits(name, activation, cols):
            output_delta(ctx, name, a, y, delta, activation)
        else:
            check_array(ctx, a, "a", dtype=dtype, shape=x.shape)
            check_array(ctx, delta, "delta", dtype=dtype, shape=x.shape)
            kernel_name += "_delta" + _delta_suffix(name, activation)
            extra = {"a": a, "delta": delta, "delta_scale": delta_scale}
    kernel = ctx.kernel("costs.cl", kernel_name, dtype=dtype)
    return kernel(ctx.queue, (items,), (items,), x=x, y=y, out=out, index=index, scale=scale, rows=rows,
                  cols=cols, partial=cl.LocalMemory(items * dtype.itemsize), **extra)


def value(ctx, name: str, activation: str, a: cla.Array, z: cla.Array, y: cla.Array) -> float:
    """The cost C of output a (logits z) for target y. Waits for the device: once per call."""
    out = cla.empty(ctx.queue, 1, a.dtype)
    value_into(ctx, name, activation, a, z, y, out)
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
