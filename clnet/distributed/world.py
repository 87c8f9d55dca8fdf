"""A group of processes that train one network together, over MPI (mpi4py).

    world = clnet.distributed.World()          # MPI.COMM_WORLD; World(comm) for another
    with world.context() as ctx:               # this rank's device
        net = clnet.InferenceNetwork(ctx, ...)
        net.fit(x, y, ..., world=world)

Collectives go through host numpy buffers. A rank that waits in one polls with short sleeps
instead of MPI's busy wait, so it leaves its core to the others (bench/RESULTS.md measures it).
With more than one rank, every way a rank can end ends the whole job with a line that says which
rank and why, instead of leaving the other ranks waiting forever: an uncaught exception, os._exit,
or anything that leaves `fit` on one rank alone (sys.exit, an error), aborts the job (MPI_Abort)
after printing it; a rank that ends normally (sys.exit or its script's end) tells its peers how
many collectives it joined, and a peer left waiting in one it never joined aborts the job saying
so; Ctrl-C stops every rank after the same step (the flag rides on the gradients' Allreduce); and
a guardian process (clnet.distributed.guardian) speaks for a rank that ends with no chance to
(SIGKILL, a crash), which the launcher then ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from traceback import format_exception

import numpy as np

from ..runtime.context import Context
from ..runtime.device import DEVICE_ENV, devices
from .guardian import start_time

POLL_SECONDS = 50e-6  # a waiting rank sleeps this long between tests of its request
DEPARTURE = 7  # the tag of the message a rank sends each peer as it ends (World._depart)
_WORLDS: list[World] = []  # this process's Worlds of more than one rank, which os._exit tells
_real_os_exit = os._exit
_real_sys_exit = sys.exit
_exit_call: list[str] = []  # how this process was asked to end: "sys.exit(3)"


def _os_exit(code: int) -> None:
    """os._exit in a job of several ranks aborts the job with a line saying so (status 1 whatever
    the code): the rank skips MPI_Finalize, which its peers would wait for, and a launcher that
    saw it end with 0 while the guardian ended its peers has reported the job as a success."""
    for world in _WORLDS:
        world.abort(f"called os._exit({code})" + (f" during {world.busy}" if world.busy is not None else ""))
    _real_os_exit(code)


def _sys_exit(code=None):
    """sys.exit that remembers its code, for the line a peer that waits for this rank writes."""
    _exit_call.append(f"called sys.exit({code!r})")
    _real_sys_exit(code)


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("clnet.distributed needs mpi4py and an MPI library: pip install 'clnet[mpi]' "
                          "(mpi4py and the mpich wheel, which brings mpiexec)") from exc
    return MPI


class World:
    """The ranks of an MPI communicator: `rank`, `size`, and `local_rank` (index among this
    machine's ranks). poll_seconds: how long a waiting rank sleeps between tests of its request (None: not at all)."""

    def __init__(self, comm=None, poll_seconds: float | None = POLL_SECONDS):
        self.MPI = _mpi()
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        # this machine's ranks, "pid:start time", for the guardians (clnet.distributed.guardian)
        self._local_peers = ",".join(local.allgather(f"{os.getpid()}:{start_time(os.getpid())}")) \
            if self.size > 1 else ""
        local.Free()
        self.poll_seconds = poll_seconds
        self.allreduce_seconds = 0.0  # time in the gradients' Allreduce, waiting for the others included
        self.copy_seconds = 0.0  # time copying gradients between device and host
        self._host: dict[tuple, np.ndarray] = {}
        self._guardian: int | None = None  # the write end of the guardian's pipe
        self.busy: str | None = None  # the collective work under way ("fit"), which no rank may leave alone
        # Departures: a rank that ends tells every peer how many collectives it joined, on a
        # communicator of their own; a rank waiting in a collective that a departed peer never
        # joined aborts the job (else it, and the departed rank in MPI_Finalize, wait forever).
        self.collectives = 0  # the collectives this rank has entered
        self._departed: dict[int, tuple[int, str]] = {}  # rank: (its collectives, why it ended)
        self._notices = self.comm.Dup() if self.size > 1 else None
        if self.size > 1:
            self._abort_on_uncaught_exceptions()
            self._start_guardian()

    def _abort_on_uncaught_exceptions(self) -> None:
        def abort(kind, value, traceback) -> None:
            self.abort(f"failed with {kind.__name__}: {value}", "".join(format_exception(kind, value, traceback)))

        sys.excepthook = abort

    def _start_guardian(self) -> None:
        """A process that says which rank ended and why when this one ends without a word
        (clnet.distributed.guardian): SIGKILL, a crash."""
        read, write = os.pipe()
        script = Path(__file__).with_name("guardian.py")  # run as a script: it needs nothing of clnet's
        subprocess.Popen([sys.executable, str(script), str(read), str(self.rank), str(self.size), str(os.getpid()),
                          self._local_peers], pass_fds=(read,), start_new_session=True, stdin=subprocess.DEVNULL)
        os.close(read)
        self._guardian = write
        _WORLDS.append(self)
        os._exit, sys.exit = _os_exit, _sys_exit
        atexit.register(self._end)  # runs before mpi4py's MPI_Finalize (registered earlier)

    def _end(self) -> None:
        """This rank's normal end: tell the peers (who may wait for it) and the guardian (who may not)."""
        self._depart(_exit_call[-1] if _exit_call else "ended (its script returned)")
        self._tell_guardian("bye")

    def _depart(self, why: str) -> None:
        """Tell every peer that this rank ends, after joining `collectives` of them (small messages:
        MPI sends them at once, whether or not the peer ever receives them)."""
        for peer in range(self.size):
            if peer != self.rank:
                with contextlib.suppress(Exception):
                    self._notices.send((self.collectives, why), dest=peer, tag=DEPARTURE)

    def _check_departures(self, what: str) -> None:
        """Abort the job when a peer has ended without joining collective `what` that this rank waits in."""
        status = self.MPI.Status()
        while self._notices.iprobe(source=self.MPI.ANY_SOURCE, tag=DEPARTURE, status=status):
            source = status.Get_source()
            self._departed[source] = self._notices.recv(source=source, tag=DEPARTURE)
        for rank, (joined, why) in sorted(self._departed.items()):
            if joined < self.collectives:
                self.abort(f"waits in {what} (collective {self.collectives}), which rank {rank} never joined: "
                           f"rank {rank} {why}")

    def _tell_guardian(self, line: str) -> None:
        if self._guardian is not None:
            with contextlib.suppress(OSError):
                os.write(self._guardian, f"{line}\n".encode())

    def abort(self, reason: str, details: str = "") -> None:
        """End the whole job: one line on stderr saying which rank and why (and `details`), a moment
        for mpiexec to forward it, then MPI_Abort."""
        sys.stderr.write(f"clnet.distributed: rank {self.rank} of {self.size} {reason}; aborting the job\n{details}")
        sys.stderr.flush()
        self._tell_guardian("reported")
        time.sleep(0.5)
        self.comm.Abort(1)

    def context(self, spec: str | None = None) -> Context:
        """This rank's device: `spec` if given, else $CLNET_DEVICE, else GPU number `local_rank`
        of this machine when it has GPUs (round robin), else the best CPU device."""
        spec = spec or os.environ.get(DEVICE_ENV) or None
        if spec is not None:
            return Context(spec)
        infos = devices()
        gpus = [info for info in infos if info.type == "GPU"]
        if not gpus:
            return Context("cpu")
        ctx = Context(gpus[self.local_rank % len(gpus)])
        ctx.reason = f"GPU {self.local_rank % len(gpus)} of {len(gpus)} for local rank {self.local_rank}"
        return ctx

    # -- collectives ---------------------------------------------------------------------------

    def _wait(self, request, what: str) -> None:
        """Wait for `request` of collective `what`, watching for peers that end without joining it."""
        while not request.Test():
            if self._notices is not None:
                self._check_departures(what)
            if self.poll_seconds is not None:
                time.sleep(self.poll_seconds)

    def _collective(self, start, what: str) -> None:
        """Start a nonblocking collective (`start()` returns its request) and wait for it."""
        self.collectives += 1
        self._wait(start(), what)

    def sum_in_place(self, host: np.ndarray, what: str = "a sum") -> np.ndarray:
        """Sum a numpy array over the ranks, in place (every rank gets the sum); `what` names it in
        the line of a rank left waiting."""
        self._collective(lambda: self.comm.Iallreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM), what)
        return host

    def sum(self, value: float) -> float:
        """A number summed over the ranks."""
        return float(self.sum_in_place(np.array([value], np.float64))[0])

    def broadcast(self, value, root: int = 0):
        """A picklable Python value of rank `root`, on every rank."""
        data = np.frombuffer(pickle.dumps(value), np.uint8) if self.rank == root else None
        length = np.array([0 if data is None else data.size], np.int64)
        self._collective(lambda: self.comm.Ibcast(length, root=root), "a broadcast")
        if data is None:
            data = np.empty(int(length[0]), np.uint8)
        self._collective(lambda: self.comm.Ibcast(data, root=root), "a broadcast")
        return pickle.loads(data.tobytes())

    def gather_all(self, value) -> list:
        """Every rank's picklable `value`, in rank order, on every rank."""
        data = np.frombuffer(pickle.dumps(value), np.uint8)
        lengths = np.empty(self.size, np.int64)
        self._collective(lambda: self.comm.Iallgather(np.array([data.size], np.int64), lengths), "a gather")
        everyone = np.empty(int(lengths.sum()), np.uint8)
        self._collective(lambda: self.comm.Iallgatherv(data, [everyone, lengths]), "a gather")
        ends = np.cumsum(lengths)
        return [pickle.loads(everyone[end - n:end].tobytes()) for n, end in zip(lengths, ends)]

    def broadcast_array(self, array, root: int = 0) -> None:
        """Copy device array `array` (contiguous) of rank `root` into every rank's `array`."""
        host = array.get()
        self._collective(lambda: self.comm.Ibcast(host, root=root), "a broadcast")
        array.set(host)

    def average_gradients(self, flat, weight: float, interrupted: bool = False) -> int:
        """flat (a device array) = the sum over ranks of weight * flat: each rank's weight is its
        share of the global batch, so the result is the gradient of the global batch. The same
        Allreduce carries `interrupted` (Ctrl-C on this rank): returns how many ranks were, so
        that every rank stops after the same step."""
        if self.size == 1:
            return int(interrupted)  # the weight is 1 and there is no one to add
        flat.queue.finish()  # this rank's own backward pass is not part of the averaging
        started = time.perf_counter()
        key = (flat.size, flat.dtype)
        host = self._host.get(key)
        if host is None:
            host = self._host[key] = np.empty(flat.size + 1, flat.dtype)
        flat.get(ary=host[:-1])
        host[:-1] *= flat.dtype.type(weight)
        host[-1] = 1 if interrupted else 0
        copied = time.perf_counter()
        self.sum_in_place(host, "the gradients' sum")
        reduced = time.perf_counter()
        flat.set(host[:-1])
        self.copy_seconds += (copied - started) + (time.perf_counter() - reduced)
        self.allreduce_seconds += reduced - copied
        return int(round(float(host[-1])))

    def check_same(self, what: str, description: dict) -> None:
        """Raise ValueError on every rank when the ranks' descriptions of `what` differ."""
        everyone = self.gather_all(description)
        for rank, theirs in enumerate(everyone):
            if theirs != everyone[0]:
                changed = sorted(k for k in set(theirs) | set(everyone[0]) if theirs.get(k) != everyone[0].get(k))
                raise ValueError(f"the ranks disagree on {what}: rank 0 has "
                                 f"{ {k: everyone[0].get(k) for k in changed} }, rank {rank} has "
                                 f"{ {k: theirs.get(k) for k in changed} }")

    def __repr__(self) -> str:
        return f"World(rank {self.rank} of {self.size}, local rank {self.local_rank} of {self.local_size})"
