"""What keeps a training run from losing anything: Ctrl-C ends it after the current step, and a
cost that stops being finite ends it with the network at its last finite weights."""

from __future__ import annotations

import math
import signal
import threading

from ..runtime.errors import TrainingDivergedError


class InterruptAfterStep:
    """While active (in the main thread), the first Ctrl-C only sets `interrupted`: the training
    loop finishes its step and then raises KeyboardInterrupt. A second Ctrl-C interrupts at once."""

    def __init__(self):
        self.interrupted = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True

    def __enter__(self) -> InterruptAfterStep:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def check_cost(cost: float, epoch: int, learning_rate: float | None) -> float:
    """`cost` if finite; TrainingDivergedError naming the epoch (counted from 1) and the causes.

    The rule for every loop that raises it: the network is left with the weights it had at the
    start of the epoch before (the last epoch whose cost was finite, so the last weights known to
    give a finite cost; the start of the first epoch when that one failed)."""
    if math.isfinite(cost):
        return cost
    rate = f" (now {learning_rate:g})" if learning_rate is not None else ""
    kept = f"the start of epoch {epoch - 1}, the last whose cost was finite" if epoch > 1 else "the start of epoch 1"
    raise TrainingDivergedError(
        f"the cost became {cost} in epoch {epoch}; training stopped and the network keeps its weights from {kept}. "
        f"Likely causes: a learning rate too large{rate}, or inputs or targets of a scale the network saturates on "
        "(standardize them)", epoch)
