"""`InferenceNetwork.evaluate`: a network's figures on data, as fit's validation computes them,
for arrays, an np.memmap (read in batches) or an iterable of (x, y) or (x, y, sample_weight)
batches (each evaluated, the figures combined by rows)."""

from __future__ import annotations

import itertools

import numpy as np

from ..nn.network import Network
from ..ops import cost_table, costs
from . import sources
from .targets import default_cost, position_labels
from .validation import Validation


def evaluate(net: Network, x, y=None, cost: str | None = None, sample_weight=None, class_weight=None
             ) -> dict[str, float]:
    """See InferenceNetwork.evaluate."""
    if sources.is_batches(x, y):
        if sample_weight is not None:
            raise ValueError("evaluate on an iterable of batches takes the weights as each batch's third item, "
                             "not sample_weight")
        batches = iter(x)
        first = next(batches, None)
        if first is None:
            raise ValueError("evaluate was given an iterable of batches that gave none")
        parts = [_sums(net, batch, cost, class_weight) for batch in itertools.chain([first], batches)]
    elif y is None:
        raise TypeError("evaluate needs targets y beside x (arrays), or x an iterable of (x, y) batches and no y")
    else:
        parts = [_sums(net, (x, y, sample_weight), cost, class_weight)]
    rows = sum(part["rows"] for part in parts)
    found = {"cost": sum(part["cost"] * part["rows"] for part in parts) / rows}
    if "accuracy" in parts[0]:
        return {**found, "accuracy": sum(part["accuracy"] * part["rows"] for part in parts) / rows}
    squares, absolute = sum(part["squares"] for part in parts), sum(part["absolute"] for part in parts)
    count, mean, spread = 0, 0.0, 0.0  # the targets' sums of squared deviations, part by part (Chan et al.)
    for part in parts:
        n, delta = part["rows"], part["t_mean"] - mean
        spread = spread + part["t_spread"] + delta ** 2 * count * n / (count + n)
        count, mean = count + n, mean + delta * n / (count + n)
    elements = rows * squares.size
    r2 = np.where(spread > 0, 1 - squares / np.where(spread > 0, spread, 1), 0.0)
    return {**found, "mse": float(squares.sum() / elements), "mae": float(absolute / elements), "r2": float(r2.mean())}


def _sums(net: Network, batch, cost: str | None, class_weight) -> dict:
    """One part's rows, cost and accuracy (means), or for values the sums that mse, mae and r2
    are made of."""
    x, y, weight = sources.unpack(batch)
    activation = net.output_activation
    cost = costs.check_cost(cost or default_cost(activation, net.outputs, y)[0], activation)
    classes = net.is_classifier or (net.gives_logits and cost_table.find(cost).labels) or (
        position_labels(y, net.outputs) is not None)  # a label per position: token accuracy
    with net.using_buffers():  # its training networks are fit's: wait for a fit in another thread
        validation = Validation(net, (x, y, weight), cost, accuracy=classes, class_weight=class_weight)
        found_cost, accuracy = validation.evaluate()
        if classes:
            return {"rows": validation.rows, "cost": found_cost, "accuracy": accuracy}
        on_device = validation.source.x
        a = net.outputs_of(x if on_device is None else on_device).astype(np.float64).reshape(validation.rows, -1)
    t = validation.y.get().astype(np.float64).reshape(validation.rows, -1)
    mean = t.mean(axis=0)
    return {"rows": validation.rows, "cost": found_cost, "squares": ((a - t) ** 2).sum(axis=0),
            "absolute": np.abs(a - t).sum(), "t_mean": mean, "t_spread": ((t - mean) ** 2).sum(axis=0)}
