"""Where fit's samples come from, step by step:

- `DeviceRows`: arrays that fit in memory, copied to the device once; each step gathers its rows
  there (one launch);
- `FileRows`: an np.memmap of the inputs (data bigger than memory): each step's rows are read from
  the file (the kernel's page cache, not the process's memory) and converted by a worker thread
  one step ahead, then copied to the device without waiting; the targets and weights, small,
  live on the device as for arrays. Data-parallel ranks each read only their own rows;
- `Batches`: any iterable of (x, y) or (x, y, sample_weight) batches (a generator, a PyTorch
  DataLoader), read one batch ahead by a worker thread, in the iterable's own order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from ..nn.network import Network
from ..ops import memory
from ..ops.arrays import host_batch, to_device_batch
from . import weights
from .targets import as_targets

AHEAD = 2  # batches a worker prepares before the training loop takes them
IN_FLIGHT = 4  # host batches whose copies to the device may be queued at once


def is_batches(x, y) -> bool:
    """Whether fit was given an iterable of batches (and no y) rather than arrays."""
    return y is None and not isinstance(x, (np.ndarray, cla.Array, str, bytes)) and hasattr(x, "__iter__")


def is_file(x) -> bool:
    """Whether x stays on the host, read step by step (an np.memmap)."""
    return isinstance(x, np.memmap)


def unpack(batch) -> tuple:
    """(x, y, sample_weight or None) of one batch of an iterable, y as numpy when a torch tensor."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise TypeError(f"each batch must be (x, y) or (x, y, sample_weight), got {type(batch).__name__}"
                        f"{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}")
    y = batch[1]
    y = y.numpy() if hasattr(y, "numpy") and not isinstance(y, np.ndarray) else y  # a torch tensor
    return batch[0], y, batch[2] if len(batch) == 3 else None


class Ahead:
    """`produce(item)` for each item of `items`, computed by a worker thread at most AHEAD items
    before they are taken; iterating gives the results in order, and raises what the worker raised."""

    _DONE = object()

    def __init__(self, produce: Callable, items: Iterable):
        self.results: queue.Queue = queue.Queue(maxsize=AHEAD)
        self.stop = threading.Event()
        self.worker = threading.Thread(target=self._work, args=(produce, items), daemon=True, name="clnet-ahead")
        self.worker.start()

    def _work(self, produce, items) -> None:
        try:
            for item in items:
                if self.stop.is_set():
                    return
                self._put((True, produce(item)))
        except BaseException as exc:  # noqa: BLE001 (given to the consumer, which raises it)
            self._put((False, exc))
            return
        self._put((True, self._DONE))

    def _put(self, entry) -> None:
        while not self.stop.is_set():
            try:
                self.results.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator:
        while True:
            ok, value = self.results.get()
            if not ok:
                raise value
            if value is self._DONE:
                return
            yield value

    def close(self) -> None:
        """Stop the worker (after the item it is producing)."""
        self.stop.set()
        self.worker.join()


class Uploads:
    """Copies of host batches to device arrays, queued without waiting; each host array is kept
    until its copy is done (at most IN_FLIGHT: then the oldest is waited for)."""

    def __init__(self, ctx):
        self.ctx, self.pending = ctx, []

    def copy(self, target: cla.Array, host: np.ndarray) -> None:
        if len(self.pending) >= IN_FLIGHT:
            self.pending.pop(0)[0].wait()
        event = cl.enqueue_copy(self.ctx.queue, target.base_data, host, dst_offset=target.offset, is_blocking=False)
        self.pending.append((event, host))

    def finish(self) -> None:
        for event, _ in self.pending:
            event.wait()
        self.pending = []


class DeviceRows:
    """x, y (and the samples' weights) on the device; a step gathers its rows there."""

    def __init__(self, net: Network, x, y, cost: str, weighting: tuple, name: str = "x"):
        ctx = net.ctx
        self.net, self.name = net, name
        self.x = self._inputs(net, x)
        self.samples = (x if self.x is None else self.x).shape[0]
        self.y = as_targets(ctx, y, self.samples, net.outputs, net.dtype, net.output_activation, cost)
        self.weights = weights.sample_weights(net, y, self.samples, *weighting)  # (samples, 1 or positions)
        self.indices = cla.to_device(ctx.queue, np.arange(self.samples, dtype=np.uint32))
        self.order = np.arange(self.samples)

    def _inputs(self, net: Network, x):
        return to_device_batch(net.ctx, x, net.input_shape, net.dtype, self.name, check_device=True, ids=net.vocabulary)

    def begin_epoch(self, order: np.ndarray | None, steps: list) -> None:
        """The epoch's order of the samples (None: as they are), and its steps (first, rows, _)."""
        if order is not None:
            self.order = order
            self.indices.set(order.astype(np.uint32))

    def fill(self, first: int, rows: int, x_batch: cla.Array, y_batch: cla.Array, w_batch: cla.Array | None) -> None:
        """Queue the copy of the step's rows first .. first + rows of the epoch's order."""
        ctx = self.net.ctx
        memory.gather_batch(ctx, self.x, self.y, self.indices, first, x_batch, y_batch)
        if w_batch is not None:
            memory.gather_rows(ctx, self.weights, self.indices, first, w_batch)

    def end_epoch(self) -> None:
        pass


class FileRows(DeviceRows):
    """x an np.memmap read step by step (see the module's note); y and weights on the device."""

    def _inputs(self, net: Network, x):
        if x.ndim < 1 or x.shape[1:] != net.input_shape or x.shape[0] < 1 or x.dtype.kind not in "biuf":
            raise ValueError(f"{self.name} (an np.memmap) must hold real numbers of shape (samples, "
                             f"{', '.join(map(str, net.input_shape))}), got {x.dtype} {x.shape}")
        self.file, self.ahead, self.uploads = x, None, Uploads(net.ctx)
        return None

    def _read(self, step) -> np.ndarray:
        first, rows, _ = step
        where = self.order[first:first + rows]  # read in the file's order, kept in the epoch's
        rows_read = self.file[np.sort(where)][np.argsort(np.argsort(where))]
        return host_batch(rows_read, self.net.input_shape, self.net.dtype, self.name, self.net.vocabulary)

    def begin_epoch(self, order: np.ndarray | None, steps: list) -> None:
        super().begin_epoch(order, steps)
        self.end_epoch()
        self.ahead = Ahead(self._read, [s for s in steps if s[1]])
        self.batches = iter(self.ahead)

    def fill(self, first: int, rows: int, x_batch: cla.Array, y_batch: cla.Array, w_batch: cla.Array | None) -> None:
        ctx = self.net.ctx
        self.uploads.copy(x_batch, next(self.batches))
        memory.gather_rows(ctx, self.y.reshape(self.samples, -1), self.indices, first, y_batch.reshape(rows, -1))
        if w_batch is not None:
            memory.gather_rows(ctx, self.weights, self.indices, first, w_batch)

    def end_epoch(self) -> None:
        if self.ahead is not None:
            self.ahead.close()
            self.ahead = None
        self.uploads.finish()


class Batches:
    """An iterable of (x, y) or (x, y, sample_weight) batches (see the module's note): each epoch
    iterates it afresh; a batch's targets go to the device as fit's would."""

    def __init__(self, net: Network, batches: Iterable, cost: str):
        self.net, self.source, self.cost = net, batches, cost
        self.ahead, self.uploads, self.epochs = None, Uploads(net.ctx), 0

    def _read(self, batch) -> tuple:
        x, y, w = unpack(batch)
        return host_batch(x, self.net.input_shape, self.net.dtype, ids=self.net.vocabulary), y, w

    def epoch(self) -> Iterator[tuple[np.ndarray, cla.Array, cla.Array | None]]:
        """This epoch's batches: (x on the host, y and weights on the device)."""
        net, found = self.net, 0
        self.ahead = Ahead(self._read, self.source)
        try:
            for x, y, w in self.ahead:
                rows = x.shape[0]
                targets = as_targets(net.ctx, y, rows, net.outputs, net.dtype, net.output_activation, self.cost)
                yield x, targets, weights.sample_weights(net, y, rows, w)
                found += 1
        finally:
            self.ahead.close()
            self.uploads.finish()
        self.epochs += 1
        if not found:
            again = " again: a generator is read once (pass a list, or a DataLoader)" if self.epochs > 1 else ""
            raise ValueError(f"the batches of fit gave none in epoch {self.epochs}{again}")
