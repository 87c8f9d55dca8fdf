"""Measurements that get a process of their own: an OpenCL runtime can leave threads behind that
disturb everything else in its process (Intel's CPU runtime keeps its TBB workers spinning after
kernels), so `clnet bench` and `clnet tune` measure each device in a fresh, spawned process. The
self-check (`clnet devices --check`) runs there too: a driver that crashes takes only that process
down, and the parent says which signal and where the kernel caches are."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from typing import TypeVar

from ..runtime.errors import ClnetError
from ..runtime.paths import listed_driver_caches

T = TypeVar("T")


class ProcessDiedError(ClnetError):
    """The process of `run_alone` ended without a result: a signal (a driver's crash) or an exit."""


def _call(connection, function, args) -> None:
    try:
        result = (True, function(*args))
    except BaseException as exc:  # noqa: BLE001 (sent back and raised in the parent)
        result = (False, exc)
    try:
        connection.send(result)
    except Exception as exc:  # noqa: BLE001 (a result or exception that does not pickle)
        connection.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
    connection.close()


def run_alone(function: Callable[..., T], *args) -> T:
    """`function(*args)` in a fresh process (spawned: no OpenCL state inherited); its result, or
    its exception raised here. A process that dies (a driver that crashes, SIGBUS or SIGABRT on a
    damaged kernel cache) raises ProcessDiedError naming the signal and the kernel caches."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_call, args=(send, function, args))  # not a daemon: it may start processes
    child.start()
    send.close()
    try:
        ok, value = receive.recv()
    except EOFError:  # the child ended before it sent anything
        child.join()
        raise ProcessDiedError(_death(child.exitcode)) from None
    finally:
        receive.close()
    child.join()
    if not ok:
        raise value
    return value


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"ended with status {code} before returning"
    return (f"the measuring process {how}: an OpenCL driver crashed. A damaged file in a driver's kernel cache "
            f"does this ({listed_driver_caches()}); `clnet cache --clear` empties them")
