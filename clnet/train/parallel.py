"""fit's view of the processes it trains with: this one alone, or the ranks of a
clnet.distributed.World (data-parallel training: every rank computes the gradients of its part
of each global batch, they are summed with weights that make them the global batch's gradient,
and every rank applies the same update)."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator

import numpy as np
import pyopencl.array as cla

from ..distributed import World
from ..nn.network import Network
from ..nn.protocol import Sync
from . import batches


class DataParallel:
    """The ranks of `world` (None: one process); `sharded`: each rank passes its own data."""

    def __init__(self, world: World | None, sharded: bool):
        self.world, self.sharded = world, sharded
        self.writer = world is None or world.rank == 0  # who writes checkpoints and shows progress

    def plan(self, net: Network, samples: int, batch_size: int, description: dict) -> batches.Plan:
        """The steps of an epoch for this process; in a World, after checking that every rank
        trains the same network the same way (a clear error on every rank instead of a hang or
        garbage). description: the run's settings that every rank must share."""
        world = self.world
        if world is None:
            return batches.one_process(samples, min(batch_size, samples))
        layers = [net.inputs] + [repr(spec) for spec in net.specs]
        world.check_same("the training", {"layers": layers, "dtype": net.dtype.name, **description,
                                          "sharded": self.sharded, "samples": None if self.sharded else samples})
        if self.sharded:
            shard_sizes = world.gather_all(samples)
            return batches.sharded(shard_sizes, min(batch_size, sum(shard_sizes)), world.rank)
        return batches.split(samples, min(batch_size, samples), world.rank, world.size)

    def start(self, net: Network, seed: int) -> int:
        """Rank 0's seed and starting weights (and state) on every rank; returns the seed."""
        if self.world is None:
            return seed
        seed = self.world.broadcast(seed)
        for buffer in (net.parameter_buffer, net.state_buffer):
            if buffer is not None:
                self.world.broadcast_array(buffer.flat)
        return seed

    def shuffling(self, seed: int) -> np.random.Generator:
        """The generator of each epoch's order: the same on every rank, or each shard's own."""
        return np.random.default_rng(seed if self.world is None or not self.sharded else [seed, self.world.rank])

    def check_same_epoch(self, epoch: int) -> None:
        if self.world is not None:
            self.world.check_same("the epoch to resume from", {"epoch": epoch})

    def sync(self, rows: int, global_rows: int) -> Sync | None:
        """What a step's layers that need the whole batch's statistics see of the ranks (None in
        one process)."""
        world = self.world
        if world is None or world.size == 1:
            return None
        return Sync(world.sum_in_place, world.rank, world.size, rows, global_rows)

    def check_synced_steps(self, net: Network, plan: batches.Plan) -> None:
        """BatchNorm(sync=True) joins two collectives per step: every rank must have rows in
        every step (a rank with none would leave the others waiting). ValueError on every rank."""
        if self.world is None or self.world.size == 1 or not any(
                getattr(spec, "sync", False) for spec in _every_layer(net.specs)):
            return
        empty = self.world.sum(float(any(rows == 0 for _, rows, _ in plan.steps)))
        if empty:
            raise ValueError(f"BatchNorm(sync=True) needs rows on every rank in every step; {int(empty)} rank(s) "
                             f"have a step without any: choose a batch_size of at least {self.world.size} whose "
                             "last batch also has one row per rank")

    def sum_gradients(self, gradients: cla.Array, rows: int, global_rows: int, interrupted: bool) -> int:
        """The gradient of the step's global batch, from this rank's part of it, on every rank;
        returns how many ranks were interrupted (Ctrl-C), the same number on every rank (0 in one
        process: it checks its own flag after the update)."""
        if self.world is None:
            return 0
        return self.world.average_gradients(gradients, rows / global_rows, interrupted)

    @contextlib.contextmanager
    def running(self, what: str) -> Iterator[None]:
        """The collective work `what` ("fit"): with more than one rank, anything that ends it on this
        rank alone (an error, sys.exit, a second Ctrl-C, os._exit: see World.busy) would leave the
        others waiting forever, so it ends the job with a line saying so. A Ctrl-C that every rank
        stops for together (`collective`) is let through."""
        world = self.world
        if world is None or world.size == 1:
            yield
            return
        world.busy = what
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                world.abort(f"called sys.exit({exc.code!r}) during {what}")
            if not getattr(exc, "collective", False):
                world.abort(f"failed with {type(exc).__name__}: {exc} during {what}",
                            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            raise
        finally:
            world.busy = None

    def average_state(self, net: Network) -> None:
        """The mean over the ranks of the network's state (batch norms' running statistics, which
        each rank updates from its own part of the batches), so that every rank holds one network."""
        if self.world is None or self.world.size == 1 or net.state_buffer is None:
            return
        host = net.state_buffer.flat.get()
        self.world.sum_in_place(host)
        net.state_buffer.flat.set(host / self.world.size)

    def collective_flag(self, flag: bool) -> bool:
        """True on every rank when `flag` is on any (one sum)."""
        return flag if self.world is None else self.world.sum(float(flag)) > 0

    def total(self, cost: float) -> float:
        """A sum over the ranks."""
        return cost if self.world is None else self.world.sum(cost)


def _every_layer(specs) -> Iterator:
    """The layers and, inside blocks, their branches' layers."""
    for spec in specs:
        yield spec
        for branch in getattr(spec, "branches", ()):
            yield from _every_layer(branch)
