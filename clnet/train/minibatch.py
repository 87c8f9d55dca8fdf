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
from ..ops.arrays import all_finite
from ..runtime.log import logger
from . import checkpoints, guards, sources
from .callbacks import BatchLogs, Callback, Callbacks
from .optimizers import Optimizer
from .options import FitOptions, check_batches, validation_set
from .parallel import DataParallel
from .schedules import Schedule
from .targets import default_cost
from .validation import EarlyStopping, History, Validation


def fit(net: Network, x, y=None, cost: str | None = None, epochs: int = 1, batch_size: int = 32,
        optimizer: Optimizer | None = None, shuffle: bool = True, seed: int | None = None,
        progress: bool = True, checkpoint: str | Path | None = None, resume: bool = False,
        checkpoint_every: int = 1, world: World | None = None, sharded: bool = False,
        validation: tuple | None = None, early_stopping: int | None = None,
        schedule: Schedule | Callable[[int], float] | None = None, validation_split: float | None = None,
        verbose: int | bool | None = None, callbacks: Sequence[Callback] | None = None,
        validation_data: tuple | None = None, sample_weight=None, class_weight=None) -> History:
    """Train on mini-batches of (x, y) for `epochs` passes; returns the cost of each epoch (a list,
    clnet.train.validation.History, which also carries the validation figures).

    x: (samples, *input_shape), y: (samples, outputs), (samples,) for one output, or integer class labels
    (samples,): numpy arrays, lists or other array-likes (converted once, here), or device arrays; every value must
    be finite. Data bigger than memory: x an np.memmap (each step's rows are read from the file one step ahead, and
    the process holds only a few batches), or x any iterable of (x, y) or (x, y, sample_weight) batches and no y (a
    generator, a PyTorch DataLoader: read afresh each epoch, in its own order; cost= must be given, and there is no
    world, checkpoint or validation_split); see clnet.train.sources. Integer targets are class labels where the cost
    reads labels (cross_entropy, kl_divergence) or the output layer is softmax (or sigmoid with one output), values
    otherwise. cost: one of clnet.COSTS or an alias (clnet.ops.cost_table); None chooses by the output layer and the
    targets (cross_entropy for softmax, or sigmoid with labels; quadratic otherwise) and says which in clnet's log.
    Each epoch visits the samples in a new order drawn from `seed` (so the same seed and the same starting weights
    give the same history; layers with dropout draw their masks from it too), in batches of batch_size and a last,
    smaller batch with the rest. optimizer: clnet.SGD, Adam, AdamW, RMSprop or a registered one (default Adam(), or
    the checkpoint's own when resuming); schedule: a learning-rate schedule used instead of the optimizer's own rate
    (clnet.train.schedules, per optimizer step; the optimizer object is not changed; any callable of the step number
    works). An epoch's cost is the mean over its samples of the cost each batch had before its update. The device is
    waited on once per epoch.

    sample_weight: one weight >= 0 per sample (or per position, with labels per position); class_weight: {class:
    weight} or one weight per class (class-label targets); the cost is then sum_i w_i C_i / batch and each sample's
    gradient is weighted (clnet.train.weights).

    validation: (x_val, y_val) or (x_val, y_val, weights), evaluated after every epoch without dropout: its cost,
    and its accuracy for class labels, go to the History and the progress bar. early_stopping=patience ends the run
    when the validation cost has not improved for `patience` epochs, and leaves the network with the weights of the
    best epoch (also when the run ends without stopping early). validation_split=f instead holds out the last
    fraction f of the rows (before any shuffling, as Keras does) as the validation set. verbose: Keras' name for
    `progress` (0 hides the bar), validation_data Keras' name for `validation`. `History.history` maps "cost" (and
    "validation_cost", "validation_accuracy") to the list of each epoch's.

    callbacks: clnet.Callback objects whose hooks run at the start and end of training, of each epoch and of each
    batch, with the logs; a hook that sets `network.stop_training = True` ends the run (clnet.train.callbacks).

    checkpoint: a file that is written atomically every `checkpoint_every` epochs (and after the last) with the
    network, the optimizer's state, the epoch, the history, the shuffling position and the early-stopping state;
    with resume=True, a run continues from it when it exists (the remaining epochs of `epochs` are run, ending with
    exactly the weights of a run that never stopped) and starts afresh when it does not. Ctrl-C ends the run after
    the current step, with the network consistent and the last checkpoint kept, and raises KeyboardInterrupt. A cost
    that is not finite raises TrainingDivergedError naming the epoch; the network keeps the weights it had at the
    start of the epoch before (the last whose cost was finite), which are finite.

    world: train data-parallel with the ranks of a clnet.distributed.World. batch_size is the global batch; every
    rank computes the gradients of its part of each batch, they are averaged (one Allreduce per step) and every rank
    applies the same update, from rank 0's starting weights. Without `sharded` every rank passes the whole data set;
    with sharded=True each passes its own part. Rank 0 writes the checkpoints and shows progress.
    """
    if not isinstance(net, Network):
        raise TypeError(f"fit trains a clnet.InferenceNetwork, got {type(net).__name__}")
    if verbose is not None:
        progress = bool(verbose)
    x, y, validation, sample_weight = validation_set(x, y, validation, validation_data, validation_split, sharded,
                                                     sample_weight)
    options = FitOptions(cost=cost, epochs=epochs, batch_size=batch_size, optimizer=optimizer, shuffle=shuffle,
                         seed=seed, progress=progress, checkpoint=checkpoint, resume=resume,
                         checkpoint_every=checkpoint_every, world=world, sharded=sharded, validation=validation,
                         early_stopping=early_stopping, schedule=schedule)
    check_batches(x, y, world=world, checkpoint=checkpoint, sample_weight=sample_weight, class_weight=class_weight)
    with net.trained_by("fit"):
        return Run(net, x, y, options, callbacks, (sample_weight, class_weight)).train()


class Run:
    """One call of fit: its data and buffers on the device, the plan of each epoch's steps, and
    the state that a checkpoint keeps (epoch, history, seed, shuffling, early stopping)."""

    def __init__(self, net: Network, x, y, options: FitOptions, callbacks: Sequence[Callback] | None = None,
                 weighting: tuple = (None, None)):
        if options.cost is None:
            if y is None:
                raise ValueError("fit on an iterable of batches needs cost= (there are no targets to choose it by)")
            options.cost, why = default_cost(net.output_activation, net.outputs, y)
            logger.info("fit: cost %s (%s; pass cost= to choose another)", options.cost, why)
        options.cost = costs.check_cost(options.cost, net.output_activation)
        ctx, self.net, self.options = net.ctx, net, options
        self.validator = None if options.validation is None else Validation(net, options.validation, options.cost)
        self.parallel = DataParallel(options.world, options.sharded)
        self.trainers: dict = {}
        if sources.is_batches(x, y):
            self.source, self.plan = sources.Batches(net, x, options.cost), None
            steps = len(x) if hasattr(x, "__len__") else None
        else:
            self.source = (sources.FileRows if sources.is_file(x) else sources.DeviceRows)(net, x, y, options.cost,
                                                                                           weighting)
            self.plan = self.parallel.plan(net, self.source.samples, options.batch_size, {
                "cost": options.cost, "epochs": options.epochs, "batch_size": options.batch_size,
                "optimizer": options.optimizer.kind or type(options.optimizer).__name__,
                "shuffle": bool(options.shuffle)})
            self.parallel.check_synced_steps(net, self.plan)
            steps = len(self.plan.steps)
        self.batch_costs = cla.empty(ctx.queue, steps or 64, net.dtype)
        memory.fill(ctx, self.batch_costs, 0.0)  # clnet's kernel: pyopencl's zeros cost ms per call
        self.step_rows: list[int] = []  # each step's rows, for an epoch of batches
        self.seed = self.parallel.start(net, secrets.randbits(63) if options.seed is None else options.seed)
        self.order = self.parallel.shuffling(self.seed)
        self.history, self.first_epoch = History(), 0
        self.stopping = EarlyStopping(net, options.early_stopping)
        self._other_kept: FlatArrays | None = None  # the second buffer of `kept`
        self.kept_state = guards.KeptState(net, options.optimizer)  # and what goes with them
        self.run_description = options.run_description(self.plan.total if self.plan else None)
        if options.resume and options.checkpoint.exists():
            self._resume()
        self.parallel.check_same_epoch(self.first_epoch)
        for rows in sorted({rows for _, rows, _ in self.plan.steps if rows} if self.plan else ()):
            self._trainer(rows)  # every buffer once, here, with the run's seed
        self.callbacks = Callbacks(callbacks, net, {"epochs": options.epochs, "steps": steps})

    def _trainer(self, rows: int) -> tuple:
        """(training network, target buffer, weight buffer or None) for batches of `rows` rows:
        made once per batch size (the network keeps its training networks from call to call),
        its dropout masks drawn from the run's seed; an iterable's batches need no buffers."""
        found = self.trainers.get(rows)
        if found is None:
            net, source = self.net, self.source
            plan = self.plan is not None
            found = self.trainers[rows] = (
                net.training_network(rows),
                cla.empty(net.ctx.queue, (rows, *source.y.shape[1:]), net.dtype) if plan else None,
                cla.empty(net.ctx.queue, (rows, source.weights.shape[1]), net.dtype)
                if plan and source.weights is not None else None)
            found[0].dropout_key = self.seed
        return found

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
                samples = self.plan.total if self.plan else sum(self.step_rows)
                bar.set_postfix_str(f"{note}, {samples / (time.perf_counter() - started):,.0f} samples/s",
                                    refresh=False)
                bar.update()
                if self.history.stopped_early:
                    break
        self.stopping.restore_best(self.history)
        self.callbacks.call("on_train_end", self.history.logs(-1) if self.history else {})
        return self.history

    def _epoch(self, epoch: int, interrupt: guards.InterruptAfterStep) -> bool:
        """Queue every step of an epoch: its rows, forward, cost, backward, gradients summed over
        the ranks, update; returns True when a callback stopped training after a step (one process)."""
        self.kept_state.keep(epoch % 2)  # beside the weights that the first update keeps (`kept`)
        if self.plan is None:
            return self._epoch_of_batches(epoch, interrupt)
        net, source = self.net, self.source
        source.begin_epoch(self.order.permutation(source.samples) if self.options.shuffle else None, self.plan.steps)
        try:
            for step, (first, rows, global_rows) in enumerate(self.plan.steps):
                logs = self._begin_step(step, rows)
                if rows:
                    training, y_batch, w_batch = self.trainers[rows]
                    source.fill(first, rows, training.x, y_batch, w_batch)
                    self._forward_backward(training, y_batch, w_batch, step, self.plan.offset(step), global_rows)
                else:  # nothing of this batch is on this rank: it adds no gradient
                    memory.fill(net.ctx, net.gradient_buffer.flat, 0.0)
                if self._update(epoch, step, rows, global_rows, interrupt, logs):
                    return True
        finally:
            source.end_epoch()
        return False

    def _epoch_of_batches(self, epoch: int, interrupt: guards.InterruptAfterStep) -> bool:
        """An epoch of an iterable's batches (sources.Batches), each its own size."""
        self.step_rows = []
        for step, (x, y_batch, w_batch) in enumerate(self.source.epoch()):
            rows = x.shape[0]
            if step >= self.batch_costs.size:  # more batches than the buffer holds: twice the room
                more = cla.empty(self.net.ctx.queue, 2 * self.batch_costs.size, self.net.dtype)
                memory.fill(self.net.ctx, more, 0.0)
                memory.copy(self.net.ctx, self.batch_costs, more[:self.batch_costs.size])
                self.batch_costs = more
            logs = self._begin_step(step, rows)
            training = self._trainer(rows)[0]
            self.source.uploads.copy(training.x, x)
            self._forward_backward(training, y_batch, w_batch, step, 0, rows)
            self.step_rows.append(rows)
            if self._update(epoch, step, rows, rows, interrupt, logs):
                return True
        return False

    def _begin_step(self, step: int, rows: int) -> BatchLogs:
        logs = BatchLogs(step, rows, lambda: self._batch_cost(step, rows))
        if self.callbacks.batches:
            self.callbacks.call("on_batch_begin", step, logs)
        return logs

    def _forward_backward(self, training, y_batch, w_batch, step: int, row_offset: int, global_rows: int) -> None:
        """Queue a step's forward pass, its cost into batch_costs[step] (its share of the epoch's
        mean; an iterable's batches: the batch's mean) and the gradients."""
        net, options = self.net, self.options
        training.step = options.optimizer.steps  # the dropout masks of this update, drawn by the rows'
        training.row_offset = row_offset  # positions in the whole batch
        training.sync = self.parallel.sync(training.x.shape[0], global_rows)  # for BatchNorm(sync=True)
        output = training.forward()
        costs.value_into(net.ctx, options.cost, net.output_activation, output, training.logits, y_batch,
                         self.batch_costs, step, self.plan.total if self.plan else None,
                         delta=training.output_gradient, weights=w_batch)
        training.backward(skip_output_derivative=costs.skips_activation_derivative(options.cost))

    def _update(self, epoch: int, step: int, rows: int, global_rows: int, interrupt: guards.InterruptAfterStep,
                logs: BatchLogs) -> bool:
        """The gradients summed over the ranks, the update (the epoch's first also keeps the
        weights it starts from, for a divergence), Ctrl-C and the batch's callbacks; True when a
        callback stopped training."""
        net, options = self.net, self.options
        stopped = self.parallel.sum_gradients(net.gradient_buffer.flat, rows, global_rows, interrupt.interrupted)
        rate = options.learning_rate()  # passed only with a schedule: subclasses may override step(p, g, keep)
        options.optimizer.step(net.parameter_buffer, net.gradient_buffer, keep=self.kept(epoch) if step == 0 else None,
                               **({} if rate is None else {"learning_rate": rate}))
        if stopped or (self.parallel.world is None and interrupt.interrupted):
            net.ctx.finish()
            raise self._interrupted(epoch, step, stopped)
        if self.callbacks.batches:
            self.callbacks.call("on_batch_end", step, logs)
            return self.callbacks.stop and self.parallel.world is None
        return False

    def _batch_cost(self, step: int, rows: int) -> float:
        """The mean cost of step `step`'s rows (this rank's) before its update: a wait."""
        if not rows:
            return float("nan")
        value = float(self.batch_costs[step].get())
        return value * self.plan.total / rows if self.plan else value

    def _interrupted(self, epoch: int, step: int, ranks: int) -> KeyboardInterrupt:
        """The KeyboardInterrupt of a Ctrl-C after this step: every rank raises it after the same
        step (`collective`), so a script that catches it goes on with one network everywhere."""
        path = self.options.checkpoint
        where = f" on {ranks} of {self.parallel.world.size} ranks" if self.parallel.world is not None else ""
        kept = (f"; the last checkpoint is {path}" if path is not None and path.exists()
                else "; no checkpoint was written yet" if path is not None else "")
        of = f" of {len(self.plan.steps)}" if self.plan else ""
        stop = KeyboardInterrupt(f"fit stopped by Ctrl-C{where} in epoch {epoch + 1}, after step {step + 1}{of}; "
                                 f"the network holds the weights of that step{kept}")
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
        if self.plan is None:  # the batches' means, each weighed by its rows
            found = self.batch_costs.get()[:len(self.step_rows)]
            epoch_cost = float(np.dot(found, self.step_rows) / max(1, sum(self.step_rows)))
        else:
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
