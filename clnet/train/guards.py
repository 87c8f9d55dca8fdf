"""What keeps a training run from losing anything: Ctrl-C ends it after the current step, and a
cost (or a batch norm's running statistics) that stops being finite ends it with the network,
its running statistics and its optimizer at their last finite point."""

from __future__ import annotations

import math
import signal
import threading

import numpy as np

from ..nn.network import Network
from ..ops.arrays import all_finite
from ..runtime.errors import TrainingDivergedError


class KeptState:
    """What a divergence puts back besides the parameters (which the optimizer's first step of an
    epoch keeps on the device): the network's state (running statistics) and the optimizer's
    state and step count, as they were at the start of an epoch. Two slots (as fit keeps two
    parameter buffers), copied to the host without waiting: the device's memory stays the
    network's, and the copy overlaps the epoch's steps."""

    def __init__(self, net: Network, optimizer):
        self.net, self.optimizer = net, optimizer
        self.slots: dict[int, tuple[int, list[np.ndarray]]] = {}

    def _buffers(self) -> list:
        net = self.net
        state = [] if net.state_buffer is None else [net.state_buffer.flat]
        return state + [s.flat for s in self.optimizer.state(net.parameter_buffer)]

    def keep(self, slot: int) -> None:
        """Queue the copies of the state as it is now into `slot`."""
        previous = self.slots.get(slot)
        arrays = [buffer.get_async(ary=None if previous is None else previous[1][i])[0]
                  for i, buffer in enumerate(self._buffers())]
        self.slots[slot] = (self.optimizer.steps, arrays)

    def finite(self, slot: int) -> bool:
        self.net.ctx.finish()
        return all(np.isfinite(a).all() for a in self.slots[slot][1])

    def put_back(self, slot: int) -> None:
        """Set the state to what `keep(slot)` copied (waits for the device)."""
        self.net.ctx.finish()
        steps, arrays = self.slots[slot]
        for buffer, array in zip(self._buffers(), arrays):
            buffer.set(array)
        self.optimizer.steps = steps


def non_finite_state(net: Network) -> list[str]:
    """The names of the state arrays (running statistics) that are not finite: a batch norm's
    inputs whose squares overflow the dtype leave the cost finite but running_var infinite."""
    if net.state_buffer is None or all_finite(net.ctx, net.state_buffer.flat):
        return []
    return [name for name, array in net.host_arrays().items() if not np.isfinite(array).all()]


def state_diverged(names: list[str], epoch: int, dtype: np.dtype) -> TrainingDivergedError:
    """The error for running statistics that stopped being finite in `epoch` (counted from 1); the
    caller has put back the start of the epoch before, as check_cost's rule says."""
    kept = f"the start of epoch {epoch - 1}" if epoch > 1 else "the start of epoch 1"
    return TrainingDivergedError(
        f"{', '.join(names)} became infinite or NaN in epoch {epoch} (the layer's inputs are too large for "
        f"{np.dtype(dtype).name} statistics: their squares overflow); training stopped and the network keeps "
        f"its weights and statistics from {kept}. Standardize the inputs, or lower the learning rate", epoch)


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
