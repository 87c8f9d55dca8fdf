"""The machine a benchmark ran on, and timing that copes with its noise."""

from __future__ import annotations

import ctypes.util
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyopencl as cl


def median_seconds(run: Callable[[], object], repeats: int = 5, warmup_seconds: float = 0.3) -> float:
    """Median wall time of `run()` (which must end with queue.finish() for device work).

    Runs it first for `warmup_seconds` (at least once): VM cores need about 0.2 s of steady
    load before they run at full speed, and OpenBLAS's threads keep spinning for a while after a
    numpy call."""
    run()  # the first run may compile: the warm-up starts after it
    started = time.perf_counter()
    while time.perf_counter() - started < warmup_seconds:
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def clblast_version() -> str:
    """CLBlast's version from its library's file name (CLBlast has no version call)."""
    name = ctypes.util.find_library("clblast")
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/lib", "/usr/lib"):
        path = Path(folder) / (name or "libclblast.so.1")
        if path.exists():
            return path.resolve().name.replace("libclblast.so.", "")
    return "unknown"


def versions() -> dict:
    found = {"python": platform.python_version(), "numpy": np.__version__, "pyopencl": cl.VERSION_TEXT,
             "clblast": clblast_version()}
    for module in ("pocl_binary_distribution", "torch"):
        try:
            found[module] = getattr(__import__(module), "__version__", "installed")
        except ImportError:
            pass
    return found


def machine() -> dict:
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model(), "cores": os.cpu_count(), "host": platform.node(), "versions": versions()}
