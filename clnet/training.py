"""Training: stochastic gradient descent over the batch a TrainingNetwork was made with."""

from __future__ import annotations

import math
import numbers

from . import costs
from .network import TrainingNetwork, to_device_batch


def check_learning_rate(learning_rate) -> float:
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise TypeError(f"learning_rate must be a real number, got {learning_rate!r}")
    if not math.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate}")
    return float(learning_rate)


def sgd(training: TrainingNetwork, y, cost: str = "quadratic", epochs: int = 1,
        learning_rate: float = 0.1) -> float:
    """Train by gradient descent on the training network's batch toward targets y.

    One epoch is one forward pass, one backward pass and one update over the whole batch:
    W -= learning_rate * dC/dW (and the same for every bias), where C is the cost averaged
    over the batch (clnet.costs). y: (batch, outputs), host or device. The kernels of all
    epochs are queued without waiting; returns the cost of the last epoch's forward pass
    (of the current weights when epochs is 0).
    """
    if not isinstance(training, TrainingNetwork):
        raise TypeError(f"sgd trains a clnet.TrainingNetwork, got {type(training).__name__}")
    net, ctx = training.net, training.ctx
    costs.check_cost(cost, net.layers[-1].activation)
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
        raise ValueError(f"epochs must be a whole number >= 0, got {epochs!r}")
    learning_rate = check_learning_rate(learning_rate)
    y = to_device_batch(ctx, y, net.outputs, net.dtype, name="y")
    if y.shape[0] != training.batch:
        raise ValueError(f"y must have shape ({training.batch}, {net.outputs}) like the training batch, "
                         f"got {tuple(y.shape)}")
    skip_derivative = costs.skips_activation_derivative(cost)
    output = training.forward() if epochs == 0 else None
    for _ in range(epochs):
        output = training.forward()
        costs.output_delta(ctx, cost, output, y, training.output_gradient)
        training.backward(skip_output_derivative=skip_derivative)
        training.update(learning_rate)
    return costs.value(ctx, cost, output, y)
