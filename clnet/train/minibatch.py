"""`fit`: training over shuffled mini-batches with an optimizer, in one process or data-parallel
over MPI (a clnet.distributed.World), with checkpoints, resume, Ctrl-C and divergence handled.

The pieces: `options` checks the arguments, `parallel` plans each rank's steps and sums the
gradients, `validation` evaluates and stops early, `checkpoints` saves and restores a run; the
`Run` here holds one call's data and buffers and runs the epochs.
"""

from __future__ import annotations

import math
import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyopencl.array as cla
from tqdm.auto import tqdm

from ..distributed import World
from ..nn.network import Network
from ..nn.parameters import FlatArrays
from ..ops import costs, memory
from ..ops.arrays import all_finite, to_device_batch
from ..runtime.log import logger
from . import checkpoints, guards, weights
from .callbacks import BatchLogs, Callback, Callbacks
from .optimizers import Optimizer
from .options import FitOptions
from .parallel import DataParallel
from .schedules import Schedule
from .targets import as_targets, default_cost
from .validation import EarlyStopping, History, Validation


def fit(net: Network, x, y, cost: str | None = None, epochs: int = 1, batch_size: int = 32,
        optimizer: Optimizer | None = None, shuffle: bool = True, seed: int | None = None,
        progress: bool = True, checkpoint: str | Path | None = None, resume: bool = False,
        checkpoint_every: int = 1, world: World | None = None, sharded: bool = False,
        validation: tuple | None = None, early_stopping: int | None = None,
        schedule: Schedule | Callable[[int], float] | None = None, validation_split: float | None = None,
        verbose: int | bool | None = None, callbacks: Sequence[Callback] | None = None,
        validation_data: tuple | None = None, sample_weight=None, class_weight=None) -> History:
    """Train on mini-batches of (x, y) for `epochs` passes; returns the cost of each epoch (a
    list, clnet.train.validation.History, which also carries the validation figures).

    x: (samples, *input_shape), y: (samples, outputs), (samples,) for one output, or integer class
    labels (samples,): numpy arrays, lists or other array-likes (converted once, here), or device
    arrays; every value must be finite. Integer targets are class labels where the cost is
    cross-entropy or the output layer is softmax (or sigmoid with one output), values otherwise.
    cost: "quadratic", "mse", "mae", "huber", "cross_entropy" or an alias (clnet.ops.costs); None
    chooses by the output layer and the targets (cross_entropy for softmax, or sigmoid with labels; quadratic
    otherwise) and says which in clnet's log. Each epoch visits the samples in a new order drawn
    from `seed` (so the same seed and the same starting weights give the same history; layers with
    dropout draw their masks from it too), in batches of batch_size and a last, smaller batch with
    the rest. optimizer: clnet.SGD, Adam, AdamW, RMSprop or a registered one (default Adam(), or
    the checkpoint's own when resuming); schedule: a learning-rate schedule used instead of the
    optimizer's own rate (clnet.train.schedules, per optimizer step; the optimizer object is not
    changed; any callable of the step number works). An epoch's cost is the mean over its samples
    of the cost each batch had before its update. The device is waited on once per epoch.

    sample_weight: one weight >= 0 per sample (or per position, with labels per position);
    class_weight: {class: weight} or one weight per class (class-label targets); the cost is then
    sum_i w_i C_i / batch and each sample's gradient is weighted (clnet.train.weights).

    validation: (x_val, y_val) or (x_val, y_val, weights), evaluated after every epoch without
    dropout: its cost, and its
    accuracy for class labels, go to the History and the progress bar. early_stopping=patience
    ends the run when the validation cost has not improved for `patience` epochs, and leaves the
    network with the weights of the best epoch (also when the run ends without stopping early).
    validation_split=f instead holds out the last fraction f of the rows (before any shuffling,
    as Keras does) as the validation set. verbose: Keras' name for `progress` (0 hides the bar),
    validation_data Keras' name for `validation`. `History.history` maps "cost" (and
    "validation_cost", "validation_accuracy") to the list of each epoch's.

    callbacks: clnet.Callback objects whose hooks run at the start and end of training, of each
    epoch and of each batch, with the logs; a hook that sets `network.stop_training = True` ends
    the run (clnet.train.callbacks).

    checkpoint: a file that is written atomically every `checkpoint_every` epochs (and after the
    last) with the network, the optimizer's state, the epoch, the history, the shuffling
    position and the early-stopping state; with resume=True, a run continues from it when it
    exists (the remaining epochs of `epochs` are run, ending with exactly the weights of a run
    that never stopped) and starts afresh when it does not. Ctrl-C ends the run after the
    current step, with the network consistent and the last checkpoint kept, and raises
    KeyboardInterrupt. A cost that is not finite raises TrainingDivergedError naming the epoch;
    the network keeps the weights it had at the start of the epoch before (the last whose cost
    was finite), which are finite.

    world: train data-parallel with the ranks of a clnet.distributed.World. batch_size is the
    global batch; every rank computes the gradients of its part of each batch, they are
    averaged (one Allreduce per step) and every rank applies the same update, from rank 0's
    starting weights. Without `sharded` every rank passes the whole data set; with
    sharded=True each passes its own part. Rank 0 writes the checkpoints and shows progress.
    """
    if not isinstance(net, Network):
        raise TypeError(f"fit trains a clnet.InferenceNetwork, got {type(net).__name__}")
    if verbose is not None:
        progress = bool(verbose)
    if validation_data is not None:
        if validation is not None:
            raise ValueError("validation_data is Keras' name for validation=: pass one of them, not both")
        validation = validation_data
    if validation_split is not None:
        if validation is not None or sharded:
            raise ValueError("validation_split holds out part of x and y; it goes with neither validation= "
                             "nor sharded=True (pass validation=(x_val, y_val) instead)")
        x, y, validation, sample_weight = split_off(x, y, validation_split, sample_weight)
    options = FitOptions(cost=cost, epochs=epochs, batch_size=batch_size, optimizer=optimizer, shuffle=shuffle,
                         seed=seed, progress=progress, checkpoint=checkpoint, resume=resume,
                         checkpoint_every=checkpoint_every, world=world, sharded=sharded, validation=validation,
                         early_stopping=early_stopping, schedule=schedule)
    with net.trained_by("fit"):
        return Run(net, x, y, options, callbacks, (sample_weight, class_weight)).train()


def split_off(x, y, fraction: float, sample_weight=None) -> tuple:
    """(x, y) without their last `fraction` of rows, those rows as (x_val, y_val) (with their
    weights), and the training rows' sample weights (None without)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (float, int)) or not 0 < fraction < 1:
        raise ValueError(f"validation_split must be a fraction between 0 and 1, got {fraction!r}")
    x = x if isinstance(x, cla.Array) else np.asarray(x)
    y = y if isinstance(y, cla.Array) else np.asarray(y)
    rows = x.shape[0]
    held = round(rows * fraction)
    if not 0 < held < rows:
        raise ValueError(f"validation_split={fraction} of {rows} rows leaves no training or no validation rows")
    kept = slice(0, rows - held)
    if sample_weight is None:
        return x[kept], y[kept], (x[rows - held:], y[rows - held:]), None
    w = np.asarray(sample_weight)
    if w.shape[:1] != (rows,):
        raise ValueError(f"sample_weight must have one weight per sample ({rows},), got shape {w.shape}")
    return x[kept], y[kept], (x[rows - held:], y[rows - held:], w[rows - held:]), w[kept]


class Run:
    """One call of fit: its data and buffers on the device, the plan of each epoch's steps, and
    the state that a checkpoint keeps (epoch, history, seed, shuffling, early stopping)."""

    def __init__(self, net: Network, x, y, options: FitOptions, callbacks: Sequence[Callback] | None = None,
                 weighting: tuple = (None, None)):
        if options.cost is None:
            options.cost, why = default_cost(net.output_activation, net.outputs, y)
            logger.info("fit: cost %s (%s; pass cost= to choose another)", options.cost, why)
        options.cost = costs.check_cost(options.cost, net.output_activation)
        ctx, self.net, self.options = net.ctx, net, options
        self.x = to_device_batch(ctx, x, net.input_shape, net.dtype, check_device=True, ids=net.vocabulary)
        samples = self.x.shape[0]
        self.y = as_targets(ctx, y, samples, net.outputs, net.dtype, net.output_activation, options.cost)
        self.validator = None if options.validation is None else Validation(net, options.validation, options.cost)
        self.parallel = DataParallel(options.world, options.sharded)
        self.plan = self.parallel.plan(net, samples, options.batch_size, {
            "cost": options.cost, "epochs": options.epochs, "batch_size": options.batch_size,
            "optimizer": options.optimizer.kind or type(options.optimizer).__name__, "shuffle": bool(options.shuffle)})
        self.parallel.check_synced_steps(net, self.plan)
        # every buffer once, here: a training network (kept by the network) and a target buffer per batch size
        self.weights = weights.sample_weights(net, y, samples, *weighting)  # (samples, 1 or positions) or None
        self.trainers = {rows: (net.training_network(rows), cla.empty(ctx.queue, (rows, *self.y.shape[1:]), net.dtype),
                                None if self.weights is None else cla.empty(ctx.queue, (rows, self.weights.shape[1]),
                                                                            net.dtype))
                         for rows in sorted({rows for _, rows, _ in self.plan.steps if rows})}
        self.indices = cla.to_device(ctx.queue, np.arange(samples, dtype=np.uint32))
        self.batch_costs = cla.empty(ctx.queue, len(self.plan.steps), net.dtype)
        memory.fill(ctx, self.batch_costs, 0.0)  # clnet's kernel: pyopencl's zeros cost ms per call
        self.seed = self.parallel.start(net, secrets.randbits(63) if options.seed is None else options.seed)
        self.order = self.parallel.shuffling(self.seed)
        self.history, self.first_epoch = History(), 0
        self.stopping = EarlyStopping(net, options.early_stopping)
        self._other_kept: FlatArrays | None = None  # the second buffer of `kept`
        self.kept_state = guards.KeptState(net, options.optimizer)  # and what goes with them
        self.run_description = options.run_description(self.plan.total)
        if options.resume and options.checkpoint.exists():
            self._resume()
        self.parallel.check_same_epoch(self.first_epoch)
        for training, _, _ in self.trainers.values():
            training.dropout_key = self.seed
        self.callbacks = Callbacks(callbacks, net, {"epochs": options.epochs, "steps": len(self.plan.steps)})

    def settings(self) -> dict:
        """The hyper-parameters a resume must share with the run that wrote the checkpoint."""
        options = self.options
        found = {**options.optimizer.settings(), "schedule": repr(options.schedule)}
        return found if options.seed is None else {**found, "seed": self.seed}  # no seed given: the saved one

    def _resume(self) -> None:
        self.first_epoch, saved, extra, best = checkpoints.restore(
            self.options.checkpoint, self.net, self.options.optimizer, self.order, self.run_description,
            self.settings())
        self.history.extend(saved)
        self.history.restore(extra.get("validation", {}))
        self.seed = extra.get("seed", self.seed)
        self.stopping.restore(extra.get("stopping", {}), best)

    def train(self) -> History:
        """Run the epochs left; returns the history. On MPI, anything that ends this on one rank
        alone ends the job (parallel.DataParallel.running)."""
        with self.parallel.running("fit"):
            return self._train()

    def _train(self) -> History:
        options = self.options
        resumed = self.first_epoch > 0 or self.history.stopped_early
        if resumed and (self.history.stopped_early or self.first_epoch >= options.epochs):  # a run that had ended
            reason = (f"it stopped early after epoch {len(self.history)}" if self.history.stopped_early
                      else f"its {self.first_epoch} epochs are done")
            warnings.warn(f"fit: the checkpoint {options.checkpoint} holds a finished run ({reason}): nothing to "
                          "resume; the network has its weights", stacklevel=4)
            self.stopping.restore_best(self.history)
            return self.history
        self.callbacks.call("on_train_begin", {})
        with tqdm(total=options.epochs, initial=min(self.first_epoch, options.epochs), desc="fit", unit="epoch",
                  disable=not options.progress or not self.parallel.writer) as bar, \
                guards.InterruptAfterStep() as interrupt:
            for epoch in range(self.first_epoch, options.epochs):
                started = time.perf_counter()
                self.callbacks.call("on_epoch_begin", epoch, {})
                if self._epoch(epoch, interrupt):  # a callback stopped it after a step
                    break
                note = self._end_epoch(epoch)
                bar.set_postfix_str(f"{note}, {self.plan.total / (time.perf_counter() - started):,.0f} samples/s",
                                    refresh=False)
                bar.update()
                if self.history.stopped_early:
                    break
        self.stopping.restore_best(self.history)
        self.callbacks.call("on_train_end", self.history.logs(-1) if self.history else {})
        return self.history

    def _epoch(self, epoch: int, interrupt: guards.InterruptAfterStep) -> bool:
        """Queue every step of an epoch: gather, forward, cost, backward, gradients summed over
        the ranks, update; returns True when a callback stopped training after a step (one process)."""
        net, ctx, options = self.net, self.net.ctx, self.options
        optimizer = options.optimizer
        if options.shuffle:
            self.indices.set(self.order.permutation(self.x.shape[0]).astype(np.uint32))
        skip_derivative = costs.skips_activation_derivative(options.cost)
        self.kept_state.keep(epoch % 2)  # beside the weights that the first update keeps (`kept`)
        for step, (first, rows, global_rows) in enumerate(self.plan.steps):
            logs = BatchLogs(step, rows, lambda step=step, rows=rows: self._batch_cost(step, rows))
            if self.callbacks.batches:
                self.callbacks.call("on_batch_begin", step, logs)
            if rows:
                training, y_batch, w_batch = self.trainers[rows]
                training.step = optimizer.steps  # the dropout masks of this update, drawn by the rows'
                training.row_offset = self.plan.offset(step)  # positions in the whole batch
                training.sync = self.parallel.sync(rows, global_rows)  # for BatchNorm(sync=True)
                memory.gather_batch(ctx, self.x, self.y, self.indices, first, training.x, y_batch)
                if w_batch is not None:
                    memory.gather_rows(ctx, self.weights, self.indices, first, w_batch)
                output = training.forward()
                costs.value_into(ctx, options.cost, net.output_activation, output, training.logits, y_batch,
                                 self.batch_costs, step, self.plan.total, delta=training.output_gradient,
                                 weights=w_batch)
                training.backward(skip_output_derivative=skip_derivative)
            else:  # nothing of this batch is on this rank: it adds no gradient
                memory.fill(ctx, net.gradient_buffer.flat, 0.0)
            stopped = self.parallel.sum_gradients(net.gradient_buffer.flat, rows, global_rows, interrupt.interrupted)
            # the epoch's first update also keeps the weights it starts from, for a divergence
            rate = options.learning_rate()  # passed only with a schedule: subclasses may override step(p, g, keep)
            optimizer.step(net.parameter_buffer, net.gradient_buffer, keep=self.kept(epoch) if step == 0 else None,
                           **({} if rate is None else {"learning_rate": rate}))
            if stopped or (self.parallel.world is None and interrupt.interrupted):
                ctx.finish()
                raise self._interrupted(epoch, step, stopped)
            if self.callbacks.batches:
                self.callbacks.call("on_batch_end", step, logs)
                if self.callbacks.stop and self.parallel.world is None:
                    return True
        return False

    def _batch_cost(self, step: int, rows: int) -> float:
        """The mean cost of step `step`'s rows (this rank's) before its update: a wait."""
        return float(self.batch_costs[step].get()) * self.plan.total / rows if rows else float("nan")

    def _interrupted(self, epoch: int, step: int, ranks: int) -> KeyboardInterrupt:
        """The KeyboardInterrupt of a Ctrl-C after this step: every rank raises it after the same
        step (`collective`), so a script that catches it goes on with one network everywhere."""
        path = self.options.checkpoint
        where = f" on {ranks} of {self.parallel.world.size} ranks" if self.parallel.world is not None else ""
        kept = (f"; the last checkpoint is {path}" if path is not None and path.exists()
                else "; no checkpoint was written yet" if path is not None else "")
        stop = KeyboardInterrupt(f"fit stopped by Ctrl-C{where} in epoch {epoch + 1}, after step {step + 1} of "
                                 f"{len(self.plan.steps)}; the network holds the weights of that step{kept}")
        stop.collective = True
        return stop

    def kept(self, epoch: int) -> FlatArrays:
        """Where the first update of `epoch` keeps the weights it starts from: two buffers in turn,
        so that the start of the epoch before is still there when an epoch's cost is not finite."""
        if epoch % 2 == 0:
            return self.net.kept_buffer
        if self._other_kept is None:
            self._other_kept = self.net.parameter_buffer.like()
        return self._other_kept

    def _fall_back(self, epoch: int) -> None:
        """Put back the weights, running statistics and optimizer state of the start of the epoch
        before `epoch` (of this epoch's start when this run has none before it, or when those are
        not finite). Waits for the device."""
        net = self.net
        candidates = ([epoch - 1] if epoch > self.first_epoch else []) + [epoch]
        for start in candidates:
            memory.copy(net.ctx, self.kept(start).flat, net.parameter_buffer.flat)
            self.kept_state.put_back(start % 2)
            if all_finite(net.ctx, net.parameter_buffer.flat) and self.kept_state.finite(start % 2):
                return

    def _end_epoch(self, epoch: int) -> str:
        """The epoch's cost (the one wait), divergence, validation and the checkpoint; returns
        the progress bar's note."""
        options = self.options
        epoch_cost = self.parallel.total(float(self.batch_costs.get().sum()))
        if not math.isfinite(epoch_cost):
            self._fall_back(epoch)
            rate = options.learning_rate() if options.schedule is not None else options.optimizer.learning_rate
            guards.check_cost(epoch_cost, epoch + 1, rate)
        self.parallel.average_state(self.net)
        overflowed = guards.non_finite_state(self.net)
        if overflowed:
            self._fall_back(epoch)
            raise guards.state_diverged(overflowed, epoch + 1, self.net.dtype)
        self.history.append(epoch_cost)
        note = f"cost {epoch_cost:.5g}"
        if self.validator is not None:
            note += self.stopping.after_epoch(self.validator, self.history, epoch)
            self.history.stopped_early = self.stopping.should_stop
        self.callbacks.call("on_epoch_end", epoch, self.history.logs(-1))
        if self.parallel.collective_flag(self.callbacks.stop):  # any rank's callback stops every rank
            self.history.stopped_early = True
        done = epoch + 1
        if self.parallel.writer and options.checkpoint is not None and (
                done % options.checkpoint_every == 0 or done == options.epochs or self.history.stopped_early):
            stopping, best = self.stopping.state()
            checkpoints.write(options.checkpoint, self.net, options.optimizer, self.order, done, self.history,
                              self.run_description,
                              {"seed": self.seed, "validation": self.history.record(), "stopping": stopping}, best,
                              {**self.settings(), "seed": self.seed})
        return note
