"""What `fit` trains toward: real targets, or integer class labels turned into one-hot rows."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

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


def as_targets(ctx, y, rows: int, outputs: int | tuple[int, ...], dtype) -> cla.Array:
    """(rows, outputs) device targets: real targets (array-likes, checked finite), or integer
    class labels (rows,) as one-hot rows (as a column of 0/1 for a single output)."""
    labels = class_labels(y)
    if labels is None:
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
