"""What the benchmark scripts share: clnet.app.bench's timing and machine record, tables, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clnet.app.bench.timing import machine as _machine
from clnet.app.bench.timing import median_seconds

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["device_line", "machine", "median_seconds", "table", "write_json"]


def machine(ctx=None) -> dict:
    """The machine, the device and the software a result was measured with."""
    info = _machine()
    if ctx is not None:
        from clnet.ops import blas

        tiles = blas.settings(ctx, np.float32).tiles
        info["device"] = {"name": ctx.info.name, "platform": ctx.info.platform, "type": ctx.info.type,
                          "driver": ctx.info.driver_version, "compute_units": ctx.info.compute_units,
                          "native_float_width": ctx.info.native_float_width,
                          "clnet_float_width": tiles.width or 8}
    return info


def device_line(info: dict) -> str:
    """The device as a benchmark's header names it: name, driver and vector widths."""
    d = info["device"]
    return (f"{d['name']} ({d['platform']} {d['driver']}, {d['compute_units']} compute units, native float "
            f"vectors of {d['native_float_width']}, clnet's of {d['clnet_float_width']})")


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
