"""The results of `clnet bench` as a table, a PNG chart and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from ...runtime.paths import cache_dir


def format_table(results: dict) -> str:
    names = [c["name"] for c in results["columns"]]
    header = ["metric"] + names
    rows = [header]
    for metric in results["metrics"]:
        cells = [f"{metric['name']} ({metric['unit']})"]
        for name in names:
            value = metric["values"].get(name)
            cells.append("-" if value is None else f"{value:,.1f}" if value < 1e4 else f"{value:,.0f}")
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def chart(results: dict, path: Path) -> Path | None:
    """A PNG: one panel per metric, a bar per device and reference. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    metrics = results["metrics"]
    names = [c["name"] for c in results["columns"]]
    colors = ["#1f77b4" if c["kind"] == "device" else "#999999" for c in results["columns"]]
    cols = 3
    rows = -(-len(metrics) // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for axis, metric in zip(axes.flat, metrics):
        values = [metric["values"].get(n) or 0 for n in names]
        axis.barh(range(len(names)), values, color=colors)
        axis.set_yticks(range(len(names)), [n[:22] for n in names], fontsize=7)
        better = "higher" if metric["higher_is_better"] else "lower"
        axis.set_title(f"{metric['name']}\n{metric['unit']}, {better} is better", fontsize=8)
        axis.tick_params(axis="x", labelsize=7)
        axis.invert_yaxis()
    for axis in list(axes.flat)[len(metrics):]:
        axis.axis("off")
    figure.suptitle(f"clnet bench on {results['machine']['cpu']} ({results['machine']['date'][:10]}); "
                    "blue: OpenCL devices, grey: CPU references", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def save(results: dict, out_dir: Path | None = None) -> tuple[Path, Path | None]:
    """Write the results to out_dir/clnet-bench.json and a chart out_dir/clnet-bench.png;
    out_dir None is clnet's cache folder ($CLNET_CACHE_DIR). Returns both paths (None for the
    chart without matplotlib)."""
    text = json.dumps(results, indent=1) + "\n"
    out_dir = cache_dir() if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "clnet-bench.json"
    json_path.write_text(text)
    return json_path, chart(results, out_dir / "clnet-bench.png")
