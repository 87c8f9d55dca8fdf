"""What every benchmark shares: timing (median after warm-up), the machine, tables, JSON."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def median_seconds(run: Callable[[], object], repeats: int = 5, warmup_seconds: float = 0.3) -> float:
    """Median wall time of `run()` (which must end with queue.finish() for device work).

    Runs it first for `warmup_seconds` (at least once): on these VMs the cores need about
    0.2 s of steady load before they run at full speed, and OpenBLAS's threads keep
    spinning for a while after a numpy call."""
    started = time.perf_counter()
    run()
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


def versions() -> dict:
    import numpy
    import pyopencl

    found = {"python": platform.python_version(), "numpy": numpy.__version__, "pyopencl": pyopencl.VERSION_TEXT}
    for name in ("pyclblast", "pocl_binary_distribution", "torch"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", "installed")
        except ImportError:
            pass
    return found


def machine(ctx=None) -> dict:
    """The machine, the device and the software a result was measured with."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "versions": versions(),
    }
    if ctx is not None:
        info["device"] = {"name": ctx.info.name, "platform": ctx.info.platform, "type": ctx.info.type,
                          "driver": ctx.info.driver_version, "compute_units": ctx.info.compute_units}
    return info


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
