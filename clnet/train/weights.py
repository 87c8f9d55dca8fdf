"""Weights of samples: `sample_weight` and `class_weight` of fit and evaluate, made into one
weight per sample (or per position, for class labels per position) on the device, which the
cost kernels read (clnet.ops.costs: C = sum_i w_i C_i / batch, each row's gradient times w_i).

sample_weight: one non-negative number per sample, (samples,), or per position (samples, seq)
with labels per position. class_weight: {class: weight} (classes left out weigh 1, as Keras') or
a sequence of one weight per class, for class-label targets (integer labels, one-hot or
probability rows, whose largest entry names the class, or 0/1 targets of one sigmoid output).
Given both, a sample weighs their product.
"""

from __future__ import annotations

import numbers

import numpy as np
import pyopencl.array as cla

from ..nn.network import Network
from .targets import class_labels, position_labels


def _checked(values, name: str, shape: tuple[int, ...], per_sample: tuple[int]) -> np.ndarray:
    """values as float64, of `shape` when 2-D, else of `per_sample`, finite and >= 0."""
    try:
        host = np.asarray(values.get() if isinstance(values, cla.Array) else values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers, got {type(values).__name__}") from exc
    allowed = shape if host.ndim == 2 else per_sample
    if host.shape != allowed:
        raise ValueError(f"{name} must have shape {allowed} (one weight per sample), got {host.shape}")
    bad = ~np.isfinite(host) | (host < 0)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must hold finite numbers >= 0, got {host[where]} at {where}")
    return host


def _classes_of(net: Network, y, rows: int) -> np.ndarray:
    """The class of each sample (or position) of the targets y, for class_weight."""
    labels = position_labels(y, net.outputs)
    if labels is None:
        labels = class_labels(y)
    if labels is not None:
        return labels
    host = np.asarray(y.get() if isinstance(y, cla.Array) else y)
    distributions = host.ndim == 2 and host.shape[0] == rows and host.shape[1] > 1 and bool(
        (host >= 0).all() and np.allclose(host.sum(axis=1), 1, atol=1e-6))
    if distributions:  # one-hot or probability rows
        return host.argmax(axis=1)
    if net.outputs == 1 and host.size == rows and np.isin(host, (0, 1)).all():
        return host.reshape(rows).astype(np.int64)
    raise ValueError(f"class_weight needs class-label targets (integer labels, one-hot or probability rows, or 0/1 "
                     f"for one output), got y of shape {host.shape}")


def _class_table(class_weight, classes: int) -> np.ndarray:
    """class_weight as one weight per class."""
    table = np.ones(classes)
    if isinstance(class_weight, dict):
        items = class_weight.items()
    elif isinstance(class_weight, (list, tuple, np.ndarray)):
        if len(class_weight) != classes:
            raise ValueError(f"class_weight as a sequence needs one weight per class ({classes}), got "
                             f"{len(class_weight)}")
        items = enumerate(class_weight)
    else:
        raise TypeError(f"class_weight must be a dict {{class: weight}} or a sequence of weights, got "
                        f"{type(class_weight).__name__}")
    for key, weight in items:
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= key < classes:
            raise ValueError(f"class_weight's classes must be whole numbers in 0..{classes - 1}, got {key!r}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not np.isfinite(weight) or weight < 0:
            raise ValueError(f"class_weight[{key}] must be a finite number >= 0, got {weight!r}")
        table[int(key)] = float(weight)
    return table


def sample_weights(net: Network, y, rows: int, sample_weight=None, class_weight=None) -> cla.Array | None:
    """The weight of each sample, (rows, 1), or of each position, (rows, seq), on the device (the
    network's dtype); None when neither is given."""
    if sample_weight is None and class_weight is None:
        return None
    per_position = position_labels(y, net.outputs) is not None
    shape = (rows, net.outputs[0]) if per_position else (rows,)
    weights = np.ones(shape)
    if class_weight is not None:
        classes = _classes_of(net, y, rows)
        count = net.outputs[-1] if isinstance(net.outputs, tuple) else max(net.outputs, 2)
        weights = weights * _class_table(class_weight, count)[classes].reshape(shape)
    if sample_weight is not None:
        found = _checked(sample_weight, "sample_weight", shape, (rows,))  # per position, or per sample
        weights = weights * (found if found.shape == shape else found.reshape(rows, *[1] * (len(shape) - 1)))
    return cla.to_device(net.ctx.queue, weights.reshape(rows, -1).astype(net.dtype))
