"""What `fit` trains toward, and the cost it uses when none is given.

Targets are values (rows, outputs), a 1-D array of values for a one-output network, or integer
class labels (rows,), turned into one-hot rows (a 0/1 column for one output). Integer targets are
class labels where the cost reads labels (cross-entropy, KL divergence: cost_table's `labels`) or
the output layer is a classifier's (softmax or log_softmax, or sigmoid with one output) or a
linear one of several outputs (logits), and values otherwise; where both readings are possible
and neither is implied, the error says both and how to choose.
"""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

from ..ops import cost_table
from ..ops.activations import ROWWISE
from ..ops.arrays import to_device_batch


def class_labels(y) -> np.ndarray | None:
    """y as a numpy array of integer class labels (samples,), or None when y is not one."""
    if isinstance(y, cla.Array):
        return y.get() if y.ndim == 1 and y.dtype.kind in "iu" else None  # once per fit call
    try:
        host = np.asarray(y)
    except (ValueError, TypeError):
        return None  # to_device_batch says what is wrong with it
    return host if host.ndim == 1 and host.dtype.kind in "iu" else None


def position_labels(y, outputs) -> np.ndarray | None:
    """y as a numpy array of integer labels per position (samples, seq) for a network of (seq,
    classes) outputs, or None when y is not one."""
    if not isinstance(outputs, tuple) or len(outputs) != 2:
        return None
    if isinstance(y, cla.Array):
        host = y.get() if y.ndim == 2 and y.dtype.kind in "iu" else None
    else:
        try:
            host = np.asarray(y)
        except (ValueError, TypeError):
            return None
    if host is None or host.ndim != 2 or host.dtype.kind not in "iu" or host.shape[1] != outputs[0]:
        return None
    return host


def labels_mean_classes(activation: str, outputs, cost: str | None) -> bool:
    """Whether integer targets are class labels for this output layer and cost."""
    return (cost is not None and cost_table.find(cost).labels) or activation in ROWWISE \
        or (activation == "sigmoid" and outputs == 1) or gives_logits(activation, outputs)


def gives_logits(activation: str, outputs) -> bool:
    """A linear output of several columns, whose class labels make its outputs logits (an imported
    PyTorch classifier's head): cross-entropy of their softmax."""
    return activation == "linear" and isinstance(outputs, int) and outputs > 1


def default_cost(activation: str, outputs, y) -> tuple[str, str]:
    """The cost fit uses when none is given, and why: cross-entropy for a softmax output, a sigmoid
    output with class labels (or 0/1 targets), or class labels for a linear output of several
    columns (logits, PyTorch's CrossEntropyLoss); the quadratic cost otherwise."""
    if activation in ROWWISE:
        return "cross_entropy", f"the output layer is {activation}"
    if activation == "linear" and position_labels(y, outputs) is not None:
        return "cross_entropy", "class labels per position for a linear (seq, classes) output: logits"
    if gives_logits(activation, outputs) and class_labels(y) is not None:
        return "cross_entropy", "class labels for a linear output layer: its outputs are logits (softmax cross-entropy)"
    if activation == "sigmoid":
        host = y.get() if isinstance(y, cla.Array) else np.asarray(y)
        if class_labels(host) is not None or (host.size and np.isin(host, (0, 1)).all()):
            return "cross_entropy", "a sigmoid output layer with class labels"
    return "quadratic", f"the output layer is {activation}: values, not classes"


def as_targets(ctx, y, rows: int, outputs: int | tuple[int, ...], dtype, activation: str = "linear",
               cost: str | None = None) -> cla.Array:
    """(rows, outputs) device targets: real targets (array-likes, checked finite), a 1-D array for
    one output, or integer class labels (rows,) as one-hot rows (a column of 0/1 for one output);
    for (seq, classes) outputs, integer labels per position (rows, seq), kept as labels."""
    per_position = position_labels(y, outputs)
    if per_position is not None:
        classes = outputs[1]
        bad = np.argwhere((per_position < 0) | (per_position >= classes))
        if bad.size:
            where = tuple(int(i) for i in bad[0])
            raise ValueError(f"y holds label {per_position[where]} at {where}: class labels must be in "
                             f"0..{classes - 1} for {classes} classes")
        if per_position.shape[0] != rows:
            raise ValueError(f"y has {per_position.shape[0]} rows but x has {rows}: one target per sample")
        return cla.to_device(ctx.queue, per_position.astype(dtype))
    labels = class_labels(y)
    if labels is not None and not labels_mean_classes(activation, outputs, cost):
        if outputs != 1:
            raise ValueError(
                f"y holds integers, shape ({labels.size},), for a network with {outputs} {activation} outputs: as "
                f"class labels they need a softmax output layer or cost='cross_entropy'; as values they need "
                f"shape ({labels.size}, {outputs})")
        labels, y = None, labels.astype(dtype).reshape(-1, 1)  # values of a one-output regression
    if labels is None:
        y = _values(y, outputs, activation)
        y = to_device_batch(ctx, y, outputs, dtype, name="y", check_device=True)
    else:
        if not isinstance(outputs, int):
            raise ValueError(f"integer class labels need a network with (batch, classes) outputs, not {outputs}")
        classes = max(outputs, 2)
        bad = labels[(labels < 0) | (labels >= classes)]
        if bad.size:
            raise ValueError(f"class labels must be in 0..{classes - 1} for {outputs} output(s), got {bad[:5]}")
        if outputs == 1:
            y = cla.to_device(ctx.queue, labels.astype(dtype).reshape(-1, 1))
        else:
            one_hot = np.zeros((labels.size, outputs), dtype)
            one_hot[np.arange(labels.size), labels] = 1
            y = cla.to_device(ctx.queue, one_hot)
    if y.shape[0] != rows:
        raise ValueError(f"y has {y.shape[0]} rows but x has {rows}: one target per sample")
    return y


def _values(y, outputs, activation: str):
    """y as values: a 1-D array becomes a column for one output; for several, the error says why not."""
    if isinstance(y, cla.Array):
        return y.reshape(-1, 1) if y.ndim == 1 and outputs == 1 else y
    try:
        host = np.asarray(y)
    except (ValueError, TypeError):
        return y  # to_device_batch says what is wrong with it
    if host.ndim != 1 or not isinstance(outputs, int):
        return host
    if outputs == 1:
        return host.reshape(-1, 1)
    whole = host.dtype.kind == "f" and bool(np.isfinite(host).all()) and np.array_equal(host, np.round(host))
    hint = " (they are whole numbers: as class labels, pass them as integers, y.astype(int))" if whole else ""
    raise ValueError(f"y has shape {host.shape} but the network has {outputs} {activation} outputs: pass "
                     f"({host.size}, {outputs}) targets, or integer class labels for a softmax output layer{hint}")
