"""Training: `sgd` over the batch a TrainingNetwork was made with (the seed article's), and
`fit` over mini-batches with an optimizer."""

from __future__ import annotations

import math
import numbers
import time

import numpy as np
import pyopencl.array as cla
from tqdm.auto import tqdm

from ..nn.network import Network, TrainingNetwork
from ..ops import costs, memory
from ..ops.arrays import to_device_batch
from .optimizers import SGD, Adam, Optimizer


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
    optimizer = SGD(learning_rate)
    output = training.forward() if epochs == 0 else None
    for _ in range(epochs):
        output = training.forward()
        costs.output_delta(ctx, cost, output, y, training.output_gradient)
        training.backward(skip_output_derivative=skip_derivative)
        optimizer.step(net.parameter_buffer, net.gradient_buffer)
    return costs.value(ctx, cost, net.layers[-1].activation, output, training.logits, y)


def check_whole(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def as_targets(ctx, y, rows: int, outputs: int, dtype) -> cla.Array:
    """(rows, outputs) device targets: real targets as they are, or integer class labels (rows,)
    as one-hot rows (as a column of 0/1 for a single output)."""
    labels = None
    if isinstance(y, cla.Array) and y.ndim == 1 and y.dtype.kind in "iu":
        labels = y.get()  # once per fit call
    elif not isinstance(y, cla.Array):
        host = np.asarray(y)
        if host.ndim == 1 and host.dtype.kind in "iu":
            labels = host
    if labels is None:
        y = to_device_batch(ctx, y, outputs, dtype, name="y")
    else:
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


def fit(net: Network, x, y, cost: str = "quadratic", epochs: int = 1, batch_size: int = 32,
        optimizer: Optimizer | None = None, shuffle: bool = True, seed: int | None = None,
        progress: bool = True) -> list[float]:
    """Train on mini-batches of (x, y) for `epochs` passes; returns the cost of each epoch.

    x: (samples, inputs), y: (samples, outputs) or integer class labels (samples,), host or
    device. Each epoch visits the samples in a new order drawn from `seed` (so the same seed
    and the same starting weights give the same history), in batches of batch_size and a last,
    smaller batch with the rest. optimizer: clnet.SGD or clnet.Adam (default Adam()). An epoch's
    cost is the mean over its samples of the cost each batch had before its update. The device
    is waited on once per epoch, for the cost and the progress bar (tqdm: epoch, cost, samples/s).
    """
    if not isinstance(net, Network):
        raise TypeError(f"fit trains a clnet.InferenceNetwork, got {type(net).__name__}")
    activation = net.layers[-1].activation
    costs.check_cost(cost, activation)
    epochs, batch_size = check_whole("epochs", epochs, 0), check_whole("batch_size", batch_size, 1)
    optimizer = Adam() if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be clnet.SGD or clnet.Adam, got {type(optimizer).__name__}")
    ctx = net.ctx
    x = to_device_batch(ctx, x, net.inputs, net.dtype)
    samples = x.shape[0]
    y = as_targets(ctx, y, samples, net.outputs, net.dtype)
    batch_size = min(batch_size, samples)
    sizes = [batch_size] * (samples // batch_size) + ([samples % batch_size] if samples % batch_size else [])
    # every buffer once, here: a training network (and a target buffer) per batch size
    trainers = {size: (TrainingNetwork(net, cla.empty(ctx.queue, (size, net.inputs), net.dtype)),
                       cla.empty(ctx.queue, (size, net.outputs), net.dtype)) for size in set(sizes)}
    indices = cla.to_device(ctx.queue, np.arange(samples, dtype=np.uint32))
    batch_costs = cla.empty(ctx.queue, len(sizes), net.dtype)
    order = np.random.default_rng(seed)
    skip_derivative = costs.skips_activation_derivative(cost)
    history: list[float] = []
    with tqdm(total=epochs, desc="fit", unit="epoch", disable=not progress) as bar:
        for _ in range(epochs):
            started = time.perf_counter()
            if shuffle:
                indices.set(order.permutation(samples).astype(np.uint32))
            first = 0
            for step, size in enumerate(sizes):
                training, y_batch = trainers[size]
                memory.gather_rows(ctx, x, indices, first, training.x)
                memory.gather_rows(ctx, y, indices, first, y_batch)
                output = training.forward()
                costs.value_into(ctx, cost, activation, output, training.logits, y_batch, batch_costs, step, samples)
                costs.output_delta(ctx, cost, output, y_batch, training.output_gradient)
                training.backward(skip_output_derivative=skip_derivative)
                optimizer.step(net.parameter_buffer, net.gradient_buffer)
                first += size
            history.append(float(batch_costs.get().sum()))
            rate = samples / (time.perf_counter() - started)
            bar.set_postfix_str(f"cost {history[-1]:.5g}, {rate:,.0f} samples/s", refresh=False)
            bar.update()
    return history
