"""Callbacks of `fit` (Keras' protocol): objects whose hooks run at the start and end of the run,
of each epoch and of each batch, read the logs and may stop training.

    class StopBelow(clnet.Callback):
        def on_epoch_end(self, epoch, logs):
            if logs["cost"] < 0.01:
                self.network.stop_training = True

Epoch logs hold "cost" (the epoch's mean cost) and, with a validation set, "validation_cost" and
"validation_accuracy" (class labels only): what `History.history` lists. Batch logs hold "batch"
(its number in the epoch) and "size" (its rows); reading logs["cost"] there waits for the device
to give that batch's cost (fit otherwise waits once per epoch). A stop asked for in
`on_epoch_end` ends the run after that epoch (as early stopping does, and a checkpoint records
it); one asked for in `on_batch_end` ends it after that step, and the unfinished epoch is not in
the history (data-parallel training: at the end of the epoch, so that every rank stops together).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end")


class Callback:
    """Base of fit's callbacks: every hook does nothing. fit sets `network` (and Keras' name,
    `model`) and `params` ({"epochs", "steps"}) before on_train_begin; setting
    `network.stop_training = True` in a hook stops training."""

    network = None
    model = None
    params: dict = {}

    def on_train_begin(self, logs: dict) -> None:
        pass

    def on_train_end(self, logs: dict) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_batch_begin(self, batch: int, logs: dict) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict) -> None:
        pass


class BatchLogs(dict):
    """A batch's logs; "cost" is read from the device only when a callback asks for it."""

    def __init__(self, batch: int, size: int, cost: Callable[[], float]):
        super().__init__(batch=batch, size=size)
        self._cost = cost

    def __missing__(self, key):
        if key != "cost":
            raise KeyError(key)
        self["cost"] = value = self._cost()
        return value

    def get(self, key, default=None):
        return self[key] if key == "cost" or key in self else default


class Callbacks:
    """fit's callbacks, called in order; knows whether any has batch hooks (else none is called)."""

    def __init__(self, callbacks: Sequence[Callback] | None, network, params: dict):
        callbacks = [] if callbacks is None else callbacks
        if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list of clnet.Callback objects, got {type(callbacks).__name__}")
        for i, callback in enumerate(callbacks):
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks[{i}] must be a clnet.Callback (subclass it and write its hooks: "
                                f"{', '.join(HOOKS)}), got {type(callback).__name__}")
        self.callbacks, self.network = list(callbacks), network
        self.batches = any(type(c).on_batch_begin is not Callback.on_batch_begin
                           or type(c).on_batch_end is not Callback.on_batch_end for c in self.callbacks)
        for callback in self.callbacks:
            callback.network = callback.model = network
            callback.params = dict(params)
        network.stop_training = False

    def call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    @property
    def stop(self) -> bool:
        """Whether a hook asked training to stop."""
        return bool(getattr(self.network, "stop_training", False))
