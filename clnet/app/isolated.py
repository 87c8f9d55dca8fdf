"""Measurements that get a process of their own: an OpenCL runtime can leave threads behind that
disturb everything else in its process (Intel's CPU runtime keeps its TBB workers spinning after
kernels), so `clnet bench` and `clnet tune` measure each device in a fresh, spawned process."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_alone(function: Callable[..., T], *args) -> T:
    """`function(*args)` in a fresh process (spawned: no OpenCL state inherited); its result, or
    its exception raised here."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()
