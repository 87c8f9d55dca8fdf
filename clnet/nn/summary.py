"""A network's summary: a table of its layers (and the layers inside its blocks, indented), their
output shapes and parameter counts, with the totals, as Keras' summary prints one."""

from __future__ import annotations

import math

from .blocks import Branches


def _rows(specs, placements, label, indent: str) -> list[tuple[str, str, str]]:
    rows = []
    for i, (spec, placed) in enumerate(zip(specs, placements)):
        count = sum(math.prod(p.shape) for p in placed.parameters)
        frozen = " (frozen)" if not spec.trainable else ""
        rows.append((f"{indent}{label(i)}: {spec.brief()}{frozen}", str((None, *placed.output_shape)), f"{count:,}"))
        if isinstance(spec, Branches):  # a block: each branch's layers, indented
            for b, (branch, inner) in enumerate(zip(spec.branches, spec.placements(placed.input_shape))):
                name = spec.branch_name(b)
                if not branch:
                    rows.append((f"{indent}  {name}: the input itself", str((None, *placed.input_shape)), "0"))
                rows += _rows(branch, inner, lambda j, name=name: f"{name}.{j}", indent + "  ")
    return rows


def summary(net) -> str:
    """The table of `net`'s layers, output shapes and parameters, and the totals."""
    rows = [("layer", "output shape", "parameters")] + _rows(net.specs, net.placements, str, "")
    counts = [(math.prod(p.shape), p.trainable) for placed in net.placements for p in placed.parameters]
    trainable, state = sum(n for n, t in counts if t), sum(n for n, t in counts if not t)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"input {(None, *net.input_shape)}, {net.dtype.name}, on {net.ctx.info.name}")
    lines.append(f"parameters: {trainable + state:,} ({trainable:,} trainable, {state:,} state)")
    return "\n".join(lines)
