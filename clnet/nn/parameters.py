"""One device buffer that holds many arrays: a network's parameters, its gradients, an
optimizer's state. Each array is a view into the buffer (a pyopencl array with an offset, which
clnet's kernels take as it is), so one kernel launch updates every parameter of a network and
one transfer moves all of its gradients."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyopencl.array as cla

from ..ops import memory
from ..runtime import allocation
from ..runtime.errors import ContextClosedError

ALIGN_BYTES = 128  # every view starts on whole cache lines (and any vector width's alignment)


class FlatArrays:
    """Arrays of the given shapes, all views into one zeroed device buffer `flat`.

    The padding between views is zero and stays zero under every optimizer update (a zero
    gradient moves neither a zero weight nor its state), so the whole `flat` can be updated
    as one array. Released with its context.
    """

    def __init__(self, ctx, shapes: Sequence[tuple[int, ...]], dtype, purpose: str = "these arrays",
                 advice: str = "use smaller arrays"):
        self.ctx, self.dtype = ctx, ctx.real_dtype(dtype)
        self.purpose, self.advice = purpose, advice
        self.shapes = [tuple(int(n) for n in shape) for shape in shapes]
        align = max(1, ALIGN_BYTES // self.dtype.itemsize)
        self.offsets, total = [], 0
        for shape in self.shapes:
            self.offsets.append(total)
            total += -(-math.prod(shape) // align) * align
        nbytes = max(total, 1) * self.dtype.itemsize
        allocation.check(ctx, {f"{len(self.shapes)} arrays in one": nbytes}, purpose, advice)

        def allocate() -> cla.Array:
            flat = cla.empty(ctx.queue, max(total, 1), self.dtype)
            memory.fill(ctx, flat, 0.0)  # clnet's store kernel: pyopencl's fill ran at 0.7 GB/s
            return flat

        self._flat: cla.Array | None = allocation.guarded(ctx, purpose, advice, allocate)
        ctx.track(self, nbytes)
        self._views: list[cla.Array] | None = [
            self._flat[offset:offset + math.prod(shape)].reshape(shape)
            for offset, shape in zip(self.offsets, self.shapes)]
        ctx.own(self)

    @property
    def flat(self) -> cla.Array:
        """The one buffer, as a 1-D device array (views and padding)."""
        if self._flat is None:
            raise ContextClosedError("these arrays' context is closed; their buffer was released")
        return self._flat

    @property
    def views(self) -> list[cla.Array]:
        """The arrays, in the order of `shapes`."""
        if self._views is None:
            raise ContextClosedError("these arrays' context is closed; their buffer was released")
        return self._views

    def like(self) -> FlatArrays:
        """New zeroed arrays with the same shapes, dtype and layout (gradients, optimizer state)."""
        return FlatArrays(self.ctx, self.shapes, self.dtype, self.purpose, self.advice)

    def get(self) -> list[np.ndarray]:
        """Every array copied to the host, in order (one transfer)."""
        host = self.flat.get()
        return [host[offset:offset + math.prod(shape)].reshape(shape)
                for offset, shape in zip(self.offsets, self.shapes)]

    def release(self) -> None:
        if self._flat is not None and not self.ctx.closed:
            self.ctx.untrack(self)
        self._flat = self._views = None

    def __repr__(self) -> str:
        size = 0 if self._flat is None else self._flat.size
        return f"FlatArrays({len(self.shapes)} arrays, {self.dtype.name}, {size} elements)"
