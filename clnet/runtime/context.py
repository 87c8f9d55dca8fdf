"""Context: one chosen device with its OpenCL context, queue and caches, released together.

Leaving `with clnet.Context(...) as ctx:` finishes the queue, releases what clnet made in the
context (every object registered with `own`, the programs and kernels, CLBlast's cache when
CLBlast was used) and drops the queue and context. Whatever belongs to a closed context
raises ContextClosedError when used, instead of touching released memory.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator

import numpy as np
import pyopencl as cl

from .device import DeviceInfo, choose, devices
from .errors import ContextClosedError
from .kernels import Kernel, LaunchPlan
from .programs import Programs, Templates, require_real_dtype

# Functions run on every new Context, registered by higher layers (clnet.tuning applies a
# device's saved GEMM tuning this way), so that this module imports none of them.
_open_hooks: list[Callable[[Context], None]] = []


def on_open(hook: Callable[[Context], None]) -> None:
    """Run `hook(ctx)` whenever a Context opens (once per hook)."""
    if hook not in _open_hooks:
        _open_hooks.append(hook)


class _ThreadEnd:
    """An object only a thread's locals hold: its finalizer runs when the thread ends."""


class Context:
    """An OpenCL device chosen by `spec`, with a context and an in-order queue.

    spec: None ($CLNET_DEVICE, else the best GPU, else the CPU), "pocl", "cpu", "gpu",
    "accelerator", "nvidia", "amd", "intel", "P:D" (platform:device index), or a substring
    of the device name. `ctx.reason` says why the device was chosen.
    """

    def __init__(self, spec: str | DeviceInfo | None = None, templates: Templates | None = None):
        if isinstance(spec, DeviceInfo):
            self.info, self.reason = spec, "given as a DeviceInfo"
        else:
            self.info, self.reason = choose(spec, devices())
        self._context: cl.Context | None = cl.Context([self.info.cl_device])
        self._queue: cl.CommandQueue | None = cl.CommandQueue(self._context, self.info.cl_device)
        self._programs: Programs | None = Programs(self._context, self.info, templates)
        self._owned: weakref.WeakSet = weakref.WeakSet()
        self._on_close: dict[str, Callable[[], None]] = {}
        self._real_dtypes: dict = {}
        self._scratch: dict[tuple[int, str], cl.Buffer] = {}
        self._scratch_lock = threading.Lock()
        self._thread_marker = threading.local()  # see scratch
        self._held: dict[int, tuple[int, weakref.finalize]] = {}  # id(owner): (bytes, finalizer)
        self._in_use = 0
        # per-context choices of the ops (the GEMM backend and its parameters, by dtype)
        self.settings: dict = {}
        for hook in _open_hooks:
            hook(self)

    # -- the pyopencl objects; each raises once the context is closed --------------------------

    def _check_open(self) -> None:
        if self._context is None:
            raise ContextClosedError(
                f"This clnet.Context (device {self.info.name!r}) is closed: its buffers, programs "
                "and queue were released. Open a new Context and make the object again there.")

    @property
    def closed(self) -> bool:
        return self._context is None

    @property
    def context(self) -> cl.Context:
        self._check_open()
        return self._context

    @property
    def queue(self) -> cl.CommandQueue:
        self._check_open()
        return self._queue

    @property
    def device(self) -> cl.Device:
        self._check_open()
        return self.info.cl_device

    @property
    def programs(self) -> Programs:
        """The per-context cache of built programs and kernels."""
        self._check_open()
        return self._programs

    def kernel(self, template: str, name: str, **params) -> Kernel:
        """Kernel `name` of template `template` rendered with `params`, built once per context;
        call it with its arguments by name (clnet.runtime.kernels)."""
        return self.programs.kernel(template, name, **params)

    @contextlib.contextmanager
    def record(self) -> Iterator[LaunchPlan]:
        """Record the clnet kernels queued inside the `with` (they are also queued as usual)
        into a LaunchPlan, for `replay`."""
        recording = self.programs.recording  # this thread's
        if recording.plan is not None:
            raise RuntimeError("a LaunchPlan is already being recorded in this context by this thread")
        plan = recording.plan = LaunchPlan()
        try:
            yield plan
        finally:
            recording.plan = None

    def not_recordable(self) -> None:
        """Say that work queued now is not a clnet kernel: the plan being recorded, if any,
        cannot be replayed."""
        plan = self.programs.recording.plan
        if plan is not None:
            plan.complete = False

    def foreign(self, queue_work: Callable[[], object]) -> None:
        """Call `queue_work`, which queues work that is not a clnet kernel but the same work on
        each call (a CLBlast GEMM on fixed buffers); while a plan is being recorded, keep the
        call in it, so that replay calls it again in its place."""
        queue_work()
        plan = self.programs.recording.plan
        if plan is not None:
            plan.add_call(queue_work)

    def replay(self, plan: LaunchPlan) -> None:
        """Queue a recorded plan's launches again, in order (its foreign calls called). Not
        waited on."""
        queue, enqueue = self.queue, cl.enqueue_nd_range_kernel
        for kernel, global_size, local_size in plan.launches:
            if global_size is None:
                kernel()
            else:
                enqueue(queue, kernel, global_size, local_size)
        self.programs.launches[0] += plan.kernels

    @property
    def launches(self) -> int:
        """How many clnet kernels this context has queued so far (CLBlast's are not counted)."""
        return self.programs.launches[0]

    def real_dtype(self, dtype) -> np.dtype:
        """`dtype` as np.float32 or np.float64, checking that the device can run it."""
        try:
            checked = self._real_dtypes.get(dtype)
        except TypeError:  # unhashable: certainly not a dtype, let the check say so
            checked = None
        if checked is None:
            checked = require_real_dtype(dtype, self.info)
            self._real_dtypes[dtype] = checked  # only valid dtypes are kept
        return checked

    # -- the running total of device memory that clnet holds in this context ------------------

    @property
    def memory_in_use(self) -> int:
        """Bytes of device memory that clnet's objects hold in this context now: networks'
        parameters, gradients and optimizer state, training networks' buffers, data copied to the
        device, scratch buffers. Every allocation is checked against the device's memory less this."""
        return self._in_use

    def track(self, owner, nbytes: int) -> None:
        """Count `nbytes` held by `owner` until it is released (`untrack`) or garbage-collected."""
        self.untrack(owner)
        finalizer = weakref.finalize(owner, self._forget, id(owner), int(nbytes))
        self._held[id(owner)] = (int(nbytes), finalizer)
        self._in_use += int(nbytes)

    def untrack(self, owner) -> None:
        found = self._held.pop(id(owner), None)
        if found is not None:
            nbytes, finalizer = found
            finalizer.detach()
            self._in_use -= nbytes

    def _forget(self, key: int, nbytes: int) -> None:
        if self._held.pop(key, None) is not None:
            self._in_use -= nbytes

    def scratch(self, name: str, nbytes: int) -> cl.Buffer:
        """A device buffer of at least `nbytes` kept for reuse under `name` by the calling thread
        (the queue is in order, so one op's scratch is free again for the next op of the thread;
        another thread's launches, queued in between, use scratch buffers of their own). A
        thread's scratch buffers are released when the thread ends."""
        thread = threading.get_ident()
        key = (thread, name)
        buffer = self._scratch.get(key)
        if buffer is None or buffer.size < nbytes:
            if getattr(self._thread_marker, "thread", None) != thread:  # this thread's first scratch buffer
                self._thread_marker.marker = marker = _ThreadEnd()
                self._thread_marker.thread = thread
                # the thread's locals go when it ends, and the marker with them (weakly: no cycle)
                weakref.finalize(marker, Context._drop_scratch, weakref.ref(self), thread)
            with self._scratch_lock:
                self._in_use -= 0 if buffer is None else buffer.size
                buffer = cl.Buffer(self.context, cl.mem_flags.READ_WRITE, max(int(nbytes), 1))
                self._scratch[key] = buffer
                self._in_use += buffer.size
        return buffer

    @staticmethod
    def _drop_scratch(context: weakref.ref, thread: int) -> None:
        """Release the scratch buffers of a thread that ended (queued work still holds its own
        reference: OpenCL frees a buffer after the last command that uses it)."""
        self = context()
        if self is None or self._context is None:
            return
        with self._scratch_lock:
            for key in [key for key in self._scratch if key[0] == thread]:
                self._in_use -= self._scratch.pop(key).size

    def finish(self) -> None:
        """Wait until every command queued so far has run."""
        self.queue.finish()

    # -- ownership and release -----------------------------------------------------------------

    def own(self, obj) -> None:
        """Register an object whose `release()` runs when the context closes (held weakly)."""
        self._check_open()
        self._owned.add(obj)

    def on_close(self, key: str, callback: Callable[[], None]) -> None:
        """Run `callback` once when the context closes (one callback per key)."""
        self._check_open()
        self._on_close.setdefault(key, callback)

    def close(self) -> None:
        """Finish the queue and release everything made in this context. Idempotent."""
        if self._context is None:
            return
        try:
            self._queue.finish()
        finally:
            for obj in list(self._owned):
                obj.release()
            self._owned = weakref.WeakSet()
            self._programs.clear()
            self._scratch.clear()
            for _, finalizer in self._held.values():
                finalizer.detach()
            self._held.clear()
            self._in_use = 0
            for callback in self._on_close.values():
                callback()
            self._on_close.clear()
            self._programs = None
            self._queue = None
            self._context = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<clnet.Context {self.info.index} {self.info.name!r} ({self.info.platform}), {state}>"
