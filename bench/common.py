"""What the benchmark scripts share: clnet.app.bench's timing and machine record, tables, JSON."""

from __future__ import annotations

import json
from pathlib import Path

from clnet.app.bench.timing import machine as _machine
from clnet.app.bench.timing import median_seconds

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["machine", "median_seconds", "table", "write_json"]


def machine(ctx=None) -> dict:
    """The machine, the device and the software a result was measured with."""
    info = _machine()
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
