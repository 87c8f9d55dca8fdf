"""`fit`: training over shuffled mini-batches with an optimizer, in one process or data-parallel
over MPI (a clnet.distributed.World), with checkpoints, resume, Ctrl-C and divergence handled."""

from __future__ import annotations

import math
import secrets
import time
from pathlib import Path

import numpy as np
import pyopencl.array as cla
from tqdm.auto import tqdm

from ..distributed import World
from ..nn.network import Network
from ..ops import costs, memory
from ..ops.arrays import to_device_batch
from . import batches, checkpoints, guards, saving
from .loops import check_whole
from .optimizers import Adam, Optimizer
from .schedules import Schedule
from .targets import as_targets
from .validation import History, Validation


def fit(net: Network, x, y, cost: str = "quadratic", epochs: int = 1, batch_size: int = 32,
        optimizer: Optimizer | None = None, shuffle: bool = True, seed: int | None = None,
        progress: bool = True, checkpoint: str | Path | None = None, resume: bool = False,
        checkpoint_every: int = 1, world: World | None = None, sharded: bool = False,
        validation: tuple | None = None, early_stopping: int | None = None,
        schedule: Schedule | None = None) -> History:
    """Train on mini-batches of (x, y) for `epochs` passes; returns the cost of each epoch (a
    list, clnet.train.validation.History, which also carries the validation figures).

    x: (samples, inputs), y: (samples, outputs) or integer class labels (samples,): numpy arrays,
    lists or other array-likes (converted once, here), or device arrays; every value must be
    finite. Each epoch visits the samples in a new order drawn from `seed` (so the same seed and
    the same starting weights give the same history; layers with dropout draw their masks from
    it too), in batches of batch_size and a last, smaller batch with the rest. optimizer:
    clnet.SGD or clnet.Adam (default Adam()); schedule: a learning-rate schedule for it
    (clnet.train.schedules, per optimizer step). An epoch's cost is the mean over its samples of
    the cost each batch had before its update. The device is waited on once per epoch.

    validation: (x_val, y_val), evaluated after every epoch without dropout: its cost, and its
    accuracy for class labels, go to the History and the progress bar. early_stopping=patience
    ends the run when the validation cost has not improved for `patience` epochs, and leaves the
    network with the weights of the best epoch (also when the run ends without stopping early).

    checkpoint: a file that is written atomically every `checkpoint_every` epochs (and after the
    last) with the network, the optimizer's state, the epoch, the history, the shuffling
    position and the early-stopping state; with resume=True, a run continues from it when it
    exists (the remaining epochs of `epochs` are run, ending with exactly the weights of a run
    that never stopped) and starts afresh when it does not. Ctrl-C ends the run after the
    current step, with the network consistent and the last checkpoint kept, and raises
    KeyboardInterrupt. A cost that is not finite raises TrainingDivergedError naming the epoch;
    the network keeps the weights it had at the end of the last finite epoch.

    world: train data-parallel with the ranks of a clnet.distributed.World. batch_size is the
    global batch; every rank computes the gradients of its part of each batch, they are
    averaged (one Allreduce per step) and every rank applies the same update, from rank 0's
    starting weights. Without `sharded` every rank passes the whole data set; with
    sharded=True each passes its own part. Rank 0 writes the checkpoints and shows progress.
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
    if schedule is not None:
        optimizer.learning_rate = schedule
    if sharded and world is None:
        raise ValueError("sharded=True is for data-parallel training: pass world=clnet.distributed.World()")
    patience = None if early_stopping is None else check_whole("early_stopping", early_stopping, 1)
    if patience is not None and validation is None:
        raise ValueError("early_stopping needs a validation set: fit(..., validation=(x_val, y_val))")
    path = None if checkpoint is None else saving.file_path(checkpoint)
    if resume and path is None:
        raise ValueError("resume=True needs the checkpoint file to resume from: fit(..., checkpoint=path)")
    ctx = net.ctx
    x = to_device_batch(ctx, x, net.inputs, net.dtype, check_device=True)
    samples = x.shape[0]
    y = as_targets(ctx, y, samples, net.outputs, net.dtype)
    validator = None if validation is None else Validation(net, validation, cost)
    plan = _plan(net, world, sharded, samples, batch_size, cost, epochs, optimizer, shuffle)
    # every buffer once, here: a training network (kept by the network) and a target buffer per
    # batch size
    trainers = {rows: (net.training_network(rows), cla.empty(ctx.queue, (rows, net.outputs), net.dtype))
                for rows in sorted({rows for _, rows, _ in plan.steps if rows})}
    indices = cla.to_device(ctx.queue, np.arange(samples, dtype=np.uint32))
    batch_costs = cla.empty(ctx.queue, len(plan.steps), net.dtype)
    memory.fill(ctx, batch_costs, 0.0)  # clnet's kernel: pyopencl's zeros cost ms per call in cache lookups
    seed = secrets.randbits(63) if seed is None else seed
    if world is not None:
        seed = world.broadcast(seed)
        world.broadcast_array(net.parameter_buffer.flat)
    order = np.random.default_rng(seed if world is None or not sharded else [seed, world.rank])
    run = {"samples": plan.total, "batch_size": batch_size, "cost": cost, "shuffle": bool(shuffle)}
    history, first_epoch = History(), 0
    best = None if patience is None else net.parameter_buffer.like()
    stop = {"best_cost": math.inf, "waited": 0}
    if resume and path.exists():
        first_epoch, saved, extra, best_params = checkpoints.restore(path, net, optimizer, order, run)
        history.extend(saved)
        history.restore(extra.get("validation", {}))
        seed, stop = extra.get("seed", seed), extra.get("stopping", stop)
        if best is not None and best_params is not None:
            best.flat.set(np.ascontiguousarray(best_params, dtype=net.dtype))
    if world is not None:
        world.check_same("the epoch to resume from", {"epoch": first_epoch})
    for training, _ in trainers.values():
        training.dropout_key = seed
    writer = world is None or world.rank == 0
    skip_derivative = costs.skips_activation_derivative(cost)
    with tqdm(total=epochs, initial=min(first_epoch, epochs), desc="fit", unit="epoch",
              disable=not progress or not writer) as bar, guards.InterruptAfterStep() as interrupt:
        for epoch in range(first_epoch, epochs):
            started = time.perf_counter()
            if shuffle:
                indices.set(order.permutation(samples).astype(np.uint32))
            for step, (first, rows, global_rows) in enumerate(plan.steps):
                if rows:
                    training, y_batch = trainers[rows]
                    training.step = optimizer.steps  # the dropout masks of this update
                    memory.gather_batch(ctx, x, y, indices, first, training.x, y_batch)
                    output = training.forward()
                    costs.value_into(ctx, cost, activation, output, training.logits, y_batch, batch_costs, step,
                                     plan.total, delta=training.output_gradient)
                    training.backward(skip_output_derivative=skip_derivative)
                else:  # nothing of this batch is on this rank: it adds no gradient
                    memory.fill(ctx, net.gradient_buffer.flat, 0.0)
                if world is not None:
                    world.average_gradients(net.gradient_buffer.flat, rows / global_rows)
                # the epoch's first update also keeps the weights it starts from, for a divergence
                optimizer.step(net.parameter_buffer, net.gradient_buffer, keep=net.kept_buffer if step == 0 else None)
                if interrupt.interrupted:
                    ctx.finish()
                    raise KeyboardInterrupt(f"fit stopped by Ctrl-C in epoch {epoch + 1}, after step {step + 1} of "
                                            f"{len(plan.steps)}; the network holds the weights of that step"
                                            + (f"; the last checkpoint is {path}" if path else ""))
            epoch_cost = float(batch_costs.get().sum())
            if world is not None:
                epoch_cost = world.sum(epoch_cost)
            if not math.isfinite(epoch_cost):
                net.restore_parameters()
                ctx.finish()
                guards.check_cost(epoch_cost, epoch + 1, optimizer.learning_rate)
            history.append(epoch_cost)
            note = f"cost {epoch_cost:.5g}"
            if validator is not None:
                note += _validate(validator, history, epoch, best, stop)
            if writer and path is not None and ((epoch + 1) % every == 0 or epoch + 1 == epochs):
                checkpoints.write(path, net, optimizer, order, epoch + 1, history, run,
                                  {"seed": seed, "validation": history.record(), "stopping": stop},
                                  None if best is None else best.flat.get())
            bar.set_postfix_str(f"{note}, {plan.total / (time.perf_counter() - started):,.0f} samples/s",
                                refresh=False)
            bar.update()
            if patience is not None and stop["waited"] >= patience:
                history.stopped_early = True
                break
    if best is not None and history.best_epoch is not None:
        memory.copy(ctx, best.flat, net.parameter_buffer.flat)  # the weights of the best epoch
    return history


def _validate(validator: Validation, history: History, epoch: int, best, stop: dict) -> str:
    """Evaluate the validation set after `epoch`, record it, keep the best weights (early
    stopping); returns the progress bar's note."""
    cost, accuracy = validator.evaluate()
    history.validation_cost.append(cost)
    if accuracy is not None:
        history.validation_accuracy = (history.validation_accuracy or []) + [accuracy]
    if cost < stop["best_cost"]:
        stop["best_cost"], stop["waited"], history.best_epoch = cost, 0, epoch + 1
        if best is not None:
            memory.copy(validator.net.ctx, validator.net.parameter_buffer.flat, best.flat)
    else:
        stop["waited"] += 1
    return f", validation {cost:.5g}" + (f" ({accuracy:.1%})" if accuracy is not None else "")


def _plan(net: Network, world: World | None, sharded: bool, samples: int, batch_size: int, cost: str, epochs: int,
          optimizer: Optimizer, shuffle: bool) -> batches.Plan:
    """The steps of an epoch for this process; in a World, after checking that every rank trains
    the same network the same way (a clear error on every rank instead of a hang or garbage)."""
    if world is None:
        return batches.one_process(samples, min(batch_size, samples))
    world.check_same("the training", {
        "layers": [net.inputs] + [(la.outputs, la.activation) for la in net.layers], "dtype": net.dtype.name,
        "cost": cost, "epochs": epochs, "batch_size": batch_size, "optimizer": optimizer.kind,
        "shuffle": bool(shuffle), "sharded": sharded, "samples": None if sharded else samples})
    if sharded:
        shard_sizes = world.comm.allgather(samples)
        return batches.sharded(shard_sizes, min(batch_size, sum(shard_sizes)), world.rank)
    return batches.split(samples, min(batch_size, samples), world.rank, world.size)
