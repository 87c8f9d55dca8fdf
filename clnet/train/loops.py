"""Training by gradient descent on the one batch a TrainingNetwork was made with: `sgd`, the seed
article's loop (mini-batches, optimizers and checkpoints: clnet.train.minibatch)."""

from __future__ import annotations

import numbers

import numpy as np
import pyopencl.array as cla

from ..nn.network import TrainingNetwork
from ..ops import costs
from ..ops.arrays import all_finite, to_device_batch
from . import guards
from .optimizers import SGD
from .schedules import check_learning_rate


def check_whole(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def sgd(training: TrainingNetwork, y, cost: str = "quadratic", epochs: int = 1,
        learning_rate: float = 0.1) -> float:
    """Train by gradient descent on the training network's batch toward targets y.

    One epoch is one forward pass, one backward pass and one update over the whole batch:
    W -= learning_rate * dC/dW (and the same for every bias), where C is the cost averaged
    over the batch (clnet.costs). y: (batch, outputs), host or device. The kernels of all
    epochs are queued without waiting; returns the cost of the last epoch's forward pass
    (of the current weights when epochs is 0). A cost that is not finite raises
    TrainingDivergedError naming the first such epoch, with the network left at the weights
    whose cost was last finite.
    """
    if not isinstance(training, TrainingNetwork):
        raise TypeError(f"sgd trains a clnet.TrainingNetwork, got {type(training).__name__}")
    with training.net.trained_by("sgd"):
        return _descend(training, y, cost, epochs, learning_rate)


def _descend(training: TrainingNetwork, y, cost: str, epochs: int, learning_rate: float) -> float:
    net, ctx = training.net, training.ctx
    activation = net.output_activation
    cost = costs.check_cost(cost, activation)
    epochs = check_whole("epochs", epochs, 0)
    learning_rate = check_learning_rate(learning_rate)
    y = to_device_batch(ctx, y, net.outputs, net.dtype, name="y", check_device=True)
    if y.shape[0] != training.batch:
        raise ValueError(f"y must have shape ({training.batch}, {net.outputs}) like the training batch, "
                         f"got {tuple(y.shape)}")
    if epochs == 0:
        return costs.value(ctx, cost, activation, training.forward(drop=False), training.logits, y)
    skip_derivative = costs.skips_activation_derivative(cost)
    optimizer = SGD(learning_rate)
    epoch_costs = cla.empty(ctx.queue, epochs, net.dtype)

    def run(count: int, measure: bool) -> None:
        for epoch in range(count):
            output = training.forward()  # dropout's mask follows training.step
            training.step += 1
            if measure:
                costs.value_into(ctx, cost, activation, output, training.logits, y, epoch_costs, epoch,
                                 delta=training.output_gradient)
            else:
                costs.output_delta(ctx, cost, output, y, training.output_gradient, activation)
            training.backward(skip_output_derivative=skip_derivative)
            # the first update also keeps the weights it starts from, for a divergence
            optimizer.step(net.parameter_buffer, net.gradient_buffer, keep=net.kept_buffer if epoch == 0 else None)

    first_step = training.step
    kept = guards.KeptState(net, optimizer)  # the running statistics at the start, for a replay
    kept.keep(0)
    run(epochs, measure=True)
    found = epoch_costs.get()  # the one wait of the call
    bad = np.flatnonzero(~np.isfinite(found))
    if bad.size:  # replay, deterministically, up to the start of the epoch before (guards.check_cost)
        for done in range(max(int(bad[0]) - 1, 0), -1, -1):  # finite weights, the latest there are
            net.restore_parameters()
            kept.put_back(0)
            training.step = first_step
            run(done, measure=False)
            if all_finite(ctx, net.parameter_buffer.flat):
                break
        guards.check_cost(float(found[bad[0]]), int(bad[0]) + 1, learning_rate)
    return float(found[-1])
