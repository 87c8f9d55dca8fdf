"""Training: `sgd` over the batch a TrainingNetwork was made with (the seed article's), and
`fit` over mini-batches with an optimizer, checkpoints, resume, Ctrl-C and divergence handled."""

from __future__ import annotations

import math
import numbers
import time
from pathlib import Path

import numpy as np
import pyopencl.array as cla
from tqdm.auto import tqdm

from ..nn.network import Network, TrainingNetwork
from ..ops import costs, memory
from ..ops.arrays import to_device_batch
from . import checkpoints, guards, saving
from .optimizers import SGD, Adam, Optimizer
from .targets import as_targets


def check_learning_rate(learning_rate) -> float:
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise TypeError(f"learning_rate must be a real number, got {learning_rate!r}")
    if not math.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate}")
    return float(learning_rate)


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
    net, ctx = training.net, training.ctx
    activation = net.layers[-1].activation
    costs.check_cost(cost, activation)
    epochs = check_whole("epochs", epochs, 0)
    learning_rate = check_learning_rate(learning_rate)
    y = to_device_batch(ctx, y, net.outputs, net.dtype, name="y", check_device=True)
    if y.shape[0] != training.batch:
        raise ValueError(f"y must have shape ({training.batch}, {net.outputs}) like the training batch, "
                         f"got {tuple(y.shape)}")
    if epochs == 0:
        return costs.value(ctx, cost, activation, training.forward(), training.logits, y)
    skip_derivative = costs.skips_activation_derivative(cost)
    optimizer = SGD(learning_rate)
    epoch_costs = cla.empty(ctx.queue, epochs, net.dtype)

    def run(count: int, measure: bool) -> None:
        for epoch in range(count):
            output = training.forward()
            if measure:
                costs.value_into(ctx, cost, activation, output, training.logits, y, epoch_costs, epoch)
            costs.output_delta(ctx, cost, output, y, training.output_gradient)
            training.backward(skip_output_derivative=skip_derivative)
            optimizer.step(net.parameter_buffer, net.gradient_buffer)

    net.keep_parameters()
    run(epochs, measure=True)
    found = epoch_costs.get()  # the one wait of the call
    bad = np.flatnonzero(~np.isfinite(found))
    if bad.size:  # replay, deterministically, up to the weights of the last finite cost
        net.restore_parameters()
        run(max(int(bad[0]) - 1, 0), measure=False)
        ctx.finish()
        guards.check_cost(float(found[bad[0]]), int(bad[0]) + 1, learning_rate)
    return float(found[-1])


def fit(net: Network, x, y, cost: str = "quadratic", epochs: int = 1, batch_size: int = 32,
        optimizer: Optimizer | None = None, shuffle: bool = True, seed: int | None = None,
        progress: bool = True, checkpoint: str | Path | None = None, resume: bool = False,
        checkpoint_every: int = 1) -> list[float]:
    """Train on mini-batches of (x, y) for `epochs` passes; returns the cost of each epoch.

    x: (samples, inputs), y: (samples, outputs) or integer class labels (samples,): numpy arrays,
    lists or other array-likes (converted once, here), or device arrays; every value must be
    finite. Each epoch visits the samples in a new order drawn from `seed` (so the same seed and
    the same starting weights give the same history), in batches of batch_size and a last,
    smaller batch with the rest. optimizer: clnet.SGD or clnet.Adam (default Adam()). An epoch's
    cost is the mean over its samples of the cost each batch had before its update. The device
    is waited on once per epoch, for the cost and the progress bar (tqdm: epoch, cost, samples/s).

    checkpoint: a file that is written atomically every `checkpoint_every` epochs (and after the
    last) with the network, the optimizer's state, the epoch, the history and the shuffling
    position; with resume=True, a run continues from it when it exists (the remaining epochs of
    `epochs` are run, ending with exactly the weights of a run that never stopped) and starts
    afresh when it does not. Ctrl-C ends the run after the current step, with the network
    consistent and the last checkpoint kept, and raises KeyboardInterrupt. A cost that is not
    finite raises TrainingDivergedError naming the epoch; the network keeps the weights it had
    at the end of the last finite epoch.
    """
    if not isinstance(net, Network):
        raise TypeError(f"fit trains a clnet.InferenceNetwork, got {type(net).__name__}")
    activation = net.layers[-1].activation
    costs.check_cost(cost, activation)
    epochs, batch_size = check_whole("epochs", epochs, 0), check_whole("batch_size", batch_size, 1)
    every = check_whole("checkpoint_every", checkpoint_every, 1)
    optimizer = Adam() if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be clnet.SGD or clnet.Adam, got {type(optimizer).__name__}")
    path = None if checkpoint is None else saving.file_path(checkpoint)
    if resume and path is None:
        raise ValueError("resume=True needs the checkpoint file to resume from: fit(..., checkpoint=path)")
    ctx = net.ctx
    x = to_device_batch(ctx, x, net.inputs, net.dtype, check_device=True)
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
    run = {"samples": samples, "batch_size": batch_size, "cost": cost, "shuffle": bool(shuffle)}
    history: list[float] = []
    first_epoch = 0
    if resume and path.exists():
        first_epoch, history = checkpoints.restore(path, net, optimizer, order, run)
    skip_derivative = costs.skips_activation_derivative(cost)
    rate = getattr(optimizer, "learning_rate", None)
    with tqdm(total=epochs, initial=min(first_epoch, epochs), desc="fit", unit="epoch", disable=not progress) as bar, \
            guards.InterruptAfterStep() as interrupt:
        for epoch in range(first_epoch, epochs):
            started = time.perf_counter()
            net.keep_parameters()
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
                if interrupt.interrupted:
                    ctx.finish()
                    raise KeyboardInterrupt(f"fit stopped by Ctrl-C in epoch {epoch + 1}, after step {step + 1} of "
                                            f"{len(sizes)}; the network holds the weights of that step"
                                            + (f"; the last checkpoint is {path}" if path else ""))
            epoch_cost = float(batch_costs.get().sum())
            if not math.isfinite(epoch_cost):
                net.restore_parameters()
                ctx.finish()
                guards.check_cost(epoch_cost, epoch + 1, rate)
            history.append(epoch_cost)
            if path is not None and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
                checkpoints.write(path, net, optimizer, order, epoch + 1, history, run)
            bar.set_postfix_str(f"cost {epoch_cost:.5g}, {samples / (time.perf_counter() - started):,.0f} samples/s",
                                refresh=False)
            bar.update()
    return history
