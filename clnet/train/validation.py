"""What `fit` reports besides the training cost: a validation set's cost and accuracy after every
epoch, computed on the device (one wait per epoch), the History that carries them, and early
stopping, which keeps the best epoch's weights."""

from __future__ import annotations

import math

import numpy as np
import pyopencl.array as cla

from ..nn.network import Network
from ..ops import costs, memory
from . import sources
from .targets import class_labels, labels_mean_classes, position_labels

BATCH = 1024  # validation rows per forward pass


class History(list):
    """The cost of each epoch (a list, as fit has always returned), with, when fit had a
    validation set: `validation_cost` and `validation_accuracy` per epoch (accuracy only for
    class labels, else None), `best_epoch` (counted from 1, lowest validation cost) and
    `stopped_early` (True when early stopping ended the run)."""

    def __init__(self, costs_=()):
        super().__init__(costs_)
        self.validation_cost: list[float] = []
        self.validation_accuracy: list[float] | None = None
        self.best_epoch: int | None = None
        self.stopped_early = False

    @property
    def history(self) -> dict[str, list]:
        """Each metric's list over the epochs (Keras' History.history): "cost", and with a
        validation set "validation_cost" and, for class labels, "validation_accuracy"."""
        found = {"cost": list(self)}
        if self.validation_cost:
            found["validation_cost"] = list(self.validation_cost)
        if self.validation_accuracy is not None:
            found["validation_accuracy"] = list(self.validation_accuracy)
        return found

    def logs(self, epoch: int) -> dict[str, float]:
        """Epoch `epoch`'s figures (from 0; -1: the last), by the names of `history`."""
        return {name: values[epoch] for name, values in self.history.items()}

    def record(self) -> dict:
        return {"validation_cost": self.validation_cost, "validation_accuracy": self.validation_accuracy,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early}

    def restore(self, record: dict) -> None:
        self.validation_cost = [float(c) for c in record.get("validation_cost", [])]
        accuracy = record.get("validation_accuracy")
        self.validation_accuracy = None if accuracy is None else [float(a) for a in accuracy]
        self.best_epoch = record.get("best_epoch")
        self.stopped_early = bool(record.get("stopped_early", False))


class Validation:
    """A validation set on the device and the buffers to evaluate it, made once per fit (and by
    `InferenceNetwork.evaluate`). accuracy: whether to count correct classes; None: for class
    labels only (fit's rule)."""

    def __init__(self, net: Network, data, cost: str, accuracy: bool | None = None, class_weight=None):
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise TypeError("validation must be a pair (x_val, y_val) or (x_val, y_val, sample_weight_val)")
        ctx, (x, y), sample_weight = net.ctx, data[:2], data[2] if len(data) == 3 else None
        if accuracy is None:  # class labels, not integer values of a regression
            accuracy = (class_labels(y) is not None and labels_mean_classes(net.output_activation, net.outputs, cost)
                        ) or position_labels(y, net.outputs) is not None
        self.net, self.cost, self.classes = net, cost, accuracy
        # on the device, or an np.memmap read step by step; the weights weigh the cost only
        self.source = (sources.FileRows if sources.is_file(x) else sources.DeviceRows)(
            net, x, y, cost, (sample_weight, class_weight), name="validation x")
        self.rows, self.y, self.weights = self.source.samples, self.source.y, self.source.weights
        self.size = min(BATCH, self.rows)
        self.steps = [(start, min(self.size, self.rows - start)) for start in range(0, self.rows, self.size)]
        self.trainers = {rows: net.training_network(rows)
                         for _, rows in self.steps}
        self.targets = {rows: cla.empty(ctx.queue, (rows, *self.y.shape[1:]), net.dtype) for _, rows in self.steps}
        self.batch_weights = {rows: None if self.weights is None else
                              cla.empty(ctx.queue, (rows, self.weights.shape[1]), net.dtype) for _, rows in self.steps}
        # what accuracy counts per sample: its positions where y holds a label each (costs.holds_labels)
        labels = len(net.output_shape) >= 2 and tuple(self.y.shape[1:]) == tuple(net.output_shape[:-1])
        self.counted = math.prod(self.y.shape[1:]) if labels else 1
        self.figures = cla.empty(ctx.queue, 2 * len(self.steps), net.dtype)
        memory.fill(ctx, self.figures, 0.0)

    def evaluate(self) -> tuple[float, float | None]:
        """(cost, accuracy or None) of the network now, without dropout."""
        ctx, activation = self.net.ctx, self.net.output_activation
        self.source.begin_epoch(None, [(first, rows, rows) for first, rows in self.steps])
        for step, (first, rows) in enumerate(self.steps):
            training, y, weights = self.trainers[rows], self.targets[rows], self.batch_weights[rows]
            self.source.fill(first, rows, training.x, y, weights)
            output = training.forward(drop=False)
            costs.value_into(ctx, self.cost, activation, output, training.logits, y, self.figures, 2 * step,
                             self.rows, weights=weights)
            if self.classes:
                costs.matches_into(ctx, output, y, self.figures, 2 * step + 1)
        figures = self.figures.get().reshape(-1, 2).sum(axis=0)  # the one wait
        self.source.end_epoch()
        return float(figures[0]), float(figures[1]) / (self.rows * self.counted) if self.classes else None


class EarlyStopping:
    """The best validation cost so far and the epochs waited since; with a patience, a copy of
    the best epoch's parameters (made on the device), which `restore_best` puts back."""

    def __init__(self, net: Network, patience: int | None):
        self.net, self.patience = net, patience
        self.best_cost, self.waited = math.inf, 0
        self.best = None if patience is None else net.parameter_buffer.like()

    def after_epoch(self, validator: Validation, history: History, epoch: int) -> str:
        """Evaluate the validation set after `epoch` (from 0), record it, keep the best weights;
        returns the progress bar's note."""
        cost, accuracy = validator.evaluate()
        history.validation_cost.append(cost)
        if accuracy is not None:
            history.validation_accuracy = (history.validation_accuracy or []) + [accuracy]
        if cost < self.best_cost:
            self.best_cost, self.waited, history.best_epoch = cost, 0, epoch + 1
            if self.best is not None:
                memory.copy(self.net.ctx, self.net.parameter_buffer.flat, self.best.flat)
        else:
            self.waited += 1
        return f", validation {cost:.5g}" + (f" ({accuracy:.1%})" if accuracy is not None else "")

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.waited >= self.patience

    def restore_best(self, history: History) -> None:
        """Leave the network with the weights of the best epoch (with a patience). Queued."""
        if self.best is not None and history.best_epoch is not None:
            memory.copy(self.net.ctx, self.best.flat, self.net.parameter_buffer.flat)

    def state(self) -> tuple[dict, np.ndarray | None]:
        """What a checkpoint keeps: the counters, and the best parameters (or None)."""
        return {"best_cost": self.best_cost, "waited": self.waited}, None if self.best is None else self.best.flat.get()

    def restore(self, state: dict, best: np.ndarray | None) -> None:
        self.best_cost, self.waited = state.get("best_cost", math.inf), state.get("waited", 0)
        if self.best is not None and best is not None:
            self.best.flat.set(np.ascontiguousarray(best, dtype=self.net.dtype))
