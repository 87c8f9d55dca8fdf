"""`clnet bench`: the same suite on every OpenCL device, beside numpy and PyTorch on the CPU.

Metrics (float32): GEMM GFLOP/s at a few sizes, memory bandwidth of a copy (GB/s), random
numbers per second (uniform, normal), the time to initialize the seed article's large network
(55.01 M weights, xavier), and ms per SGD epoch of the training benchmark networks. Every figure
is a median of repeated runs after a warm-up, each run ended by queue.finish(). The results go to
$CLNET_CACHE_DIR/bench.json (where Context("fastest") looks) and, with a PNG chart, to an output
folder.
"""

from __future__ import annotations

import ctypes.util
import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from . import blas, memory
from .context import Context
from .device import choose, devices
from .initialization import init
from .layers import FullyConnected
from .network import InferenceNetwork, TrainingNetwork
from .paths import BENCH_FILE, cache_dir
from .progress import Progress
from .rng import Philox
from .training import sgd

FORMAT = 1
RATE = 0.05
SEED_NETWORK = (10000, [(5000, "tanh"), (1000, "sigmoid"), (10, "sigmoid")])
NETWORKS = {
    "small": (784, [(512, "tanh"), (10, "sigmoid")], 256),
    "large": (10000, [(5000, "tanh"), (1000, "sigmoid"), (10, "sigmoid")], 1000),
}
SUITES = {
    "quick": {"gemm": (512, 1024), "copy": 16_000_000, "random": 10_000_000, "networks": ("small",), "repeats": 3},
    "full": {"gemm": (256, 512, 1024, 2048), "copy": 64_000_000, "random": 55_010_000,
             "networks": ("small", "large"), "repeats": 5},
}


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


# -- the machine ------------------------------------------------------------------------------

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


# -- reference implementations of the training epoch -------------------------------------------

def numpy_epoch(params, names, x, y) -> None:
    """One epoch of the benchmark networks in numpy: forward, backprop of the quadratic cost, SGD."""
    acts = {"tanh": np.tanh, "sigmoid": lambda z: 0.5 * (1 + np.tanh(0.5 * z))}
    slopes = {"tanh": lambda a: 1 - a * a, "sigmoid": lambda a: a * (1 - a)}
    outs = [x]
    for (w, b), name in zip(params, names):
        outs.append(acts[name](outs[-1] @ w.T + b))
    delta = (outs[-1] - y) * np.float32(1 / x.shape[0])
    for i in reversed(range(len(params))):
        w, b = params[i]
        delta *= slopes[names[i]](outs[i + 1])
        grad_w, grad_b = delta.T @ outs[i], delta.sum(axis=0)
        if i:
            delta = delta @ w
        w -= RATE * grad_w
        b -= RATE * grad_b


def torch_epoch(inputs: int, layers, x, y) -> Callable[[], None]:
    """One epoch of the same network in PyTorch (ImportError without it)."""
    import torch

    modules, width = [], inputs
    for outputs, name in layers:
        modules += [torch.nn.Linear(width, outputs), torch.nn.Tanh() if name == "tanh" else torch.nn.Sigmoid()]
        width = outputs
    model = torch.nn.Sequential(*modules)
    optimizer = torch.optim.SGD(model.parameters(), lr=RATE)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def epoch():
        optimizer.zero_grad()
        loss = ((model(tx) - ty) ** 2).sum() / (2 * tx.shape[0])
        loss.backward()
        optimizer.step()

    return epoch


def network_data(key: str):
    inputs, layers, batch = NETWORKS[key]
    rng = np.random.default_rng(0)
    return rng.uniform(size=(batch, inputs)).astype(np.float32), np.full((batch, layers[-1][0]), 0.33, np.float32)


def numpy_xavier(shapes, rng) -> Callable[[], None]:
    weights = [np.empty(s, np.float32) for s in shapes]
    biases = [np.empty(s[0], np.float32) for s in shapes]

    def run():
        for w, b in zip(weights, biases):
            w[...] = rng.standard_normal(w.shape, dtype=np.float32)
            w *= np.float32(math.sqrt(2 / sum(w.shape)))
            b[...] = 0

    return run


# -- the suite ----------------------------------------------------------------------------------

class Suite:
    """Metric name -> (unit, higher is better) in the order of the table, and the tasks."""

    def __init__(self, quick: bool):
        self.config = SUITES["quick" if quick else "full"]
        self.metrics: dict[str, tuple[str, bool]] = {}
        for n in self.config["gemm"]:
            self.metrics[f"GEMM n={n}"] = ("GFLOP/s", True)
        self.metrics["copy bandwidth"] = ("GB/s", True)
        self.metrics["uniform random numbers"] = ("M/s", True)
        self.metrics["normal random numbers"] = ("M/s", True)
        self.metrics["init 55.01 M weights (xavier)"] = ("ms", False)
        for key in self.config["networks"]:
            inputs, layers, batch = NETWORKS[key]
            shape = "-".join([str(inputs)] + [str(o) for o, _ in layers])
            self.metrics[f"SGD epoch {shape}, batch {batch}"] = ("ms", False)

    def device(self, ctx, step: Callable[[str], None]) -> dict[str, float]:
        """Every metric on one device."""
        repeats, found = self.config["repeats"], {}
        for n in self.config["gemm"]:
            step(f"GEMM n={n}")
            found[f"GEMM n={n}"] = _device_gemm(ctx, n, repeats)
        step("copy bandwidth")
        found["copy bandwidth"] = _device_copy(ctx, self.config["copy"], repeats)
        step("random numbers")
        found["uniform random numbers"], found["normal random numbers"] = _device_random(
            ctx, self.config["random"], repeats)
        step("init 55.01 M weights")
        found["init 55.01 M weights (xavier)"] = _device_init(ctx, repeats)
        for key, metric in self._network_metrics():
            step(metric)
            found[metric] = _device_epoch(ctx, key, _epoch_repeats(key, repeats))
        return found

    def _network_metrics(self) -> list[tuple[str, str]]:
        names = [m for m in self.metrics if m.startswith("SGD epoch")]
        return list(zip(self.config["networks"], names))

    def numpy(self, step: Callable[[str], None]) -> dict[str, float]:
        step("numpy")
        repeats, found, rng = self.config["repeats"], {}, np.random.default_rng(1)
        for n in self.config["gemm"]:
            found[f"GEMM n={n}"] = _host_gemm(lambda a: a @ a, rng.uniform(-1, 1, (n, n)).astype(np.float32), repeats)
        size = self.config["copy"]
        found["copy bandwidth"] = _host_copy(np.copyto, np.ones(size, np.float32), np.empty(size, np.float32),
                                             repeats)
        size = self.config["random"]
        found["uniform random numbers"] = size / median_seconds(lambda: rng.random(size, dtype=np.float32),
                                                                repeats) / 1e6
        found["normal random numbers"] = size / median_seconds(lambda: rng.standard_normal(size, dtype=np.float32),
                                                               repeats) / 1e6
        widths = [SEED_NETWORK[0]] + [o for o, _ in SEED_NETWORK[1]]
        found["init 55.01 M weights (xavier)"] = 1e3 * median_seconds(
            numpy_xavier(list(zip(widths[1:], widths)), rng), repeats)
        for key, metric in self._network_metrics():
            found[metric] = 1e3 * median_seconds(_numpy_network(key, rng), _epoch_repeats(key, repeats))
        return found

    def torch(self, step: Callable[[str], None]) -> dict[str, float] | None:
        try:
            import torch
        except ImportError:
            return None
        step("PyTorch")
        repeats, found = self.config["repeats"], {}
        torch.manual_seed(1)
        for n in self.config["gemm"]:
            found[f"GEMM n={n}"] = _host_gemm(lambda a: torch.mm(a, a), torch.rand(n, n), repeats)
        size = self.config["copy"]
        found["copy bandwidth"] = _host_copy(lambda dst, src: dst.copy_(src), torch.ones(size), torch.empty(size),
                                             repeats)
        size = self.config["random"]
        out = torch.empty(size)
        found["uniform random numbers"] = size / median_seconds(out.uniform_, repeats) / 1e6
        found["normal random numbers"] = size / median_seconds(out.normal_, repeats) / 1e6
        found["init 55.01 M weights (xavier)"] = 1e3 * median_seconds(torch_xavier(), repeats)
        for key, metric in self._network_metrics():
            inputs, layers, _ = NETWORKS[key]
            found[metric] = 1e3 * median_seconds(torch_epoch(inputs, layers, *network_data(key)),
                                                 _epoch_repeats(key, repeats))
        return found


def _epoch_repeats(key: str, repeats: int) -> int:
    return max(2, repeats - 2) if key == "large" else repeats  # a large epoch takes seconds


def _device_gemm(ctx, n: int, repeats: int) -> float:
    a = cla.to_device(ctx.queue, np.random.default_rng(n).uniform(-1, 1, (n, n)).astype(np.float32))
    c = cla.empty(ctx.queue, (n, n), np.float32)
    return 2 * n**3 / median_seconds(lambda: (blas.gemm(ctx, a, a, c), ctx.finish()), repeats) / 1e9


def _device_copy(ctx, size: int, repeats: int) -> float:
    src, dst = cla.empty(ctx.queue, size, np.float32), cla.empty(ctx.queue, size, np.float32)
    memory.fill(ctx, src, 1.0)
    return 2 * 4 * size / median_seconds(lambda: (memory.copy(ctx, src, dst), ctx.finish()), repeats) / 1e9


def _device_random(ctx, size: int, repeats: int) -> tuple[float, float]:
    g, a = Philox(ctx, 1), cla.empty(ctx.queue, size, np.float32)
    uniform = size / median_seconds(lambda: (g.uniform(a), ctx.finish()), repeats) / 1e6
    normal = size / median_seconds(lambda: (g.normal(a), ctx.finish()), repeats) / 1e6
    return uniform, normal


def _device_init(ctx, repeats: int) -> float:
    inputs, layers = SEED_NETWORK
    big = InferenceNetwork(ctx, inputs, [FullyConnected(o, act) for o, act in layers])
    try:
        return 1e3 * median_seconds(lambda: (init(big, "xavier", seed=1), ctx.finish()), repeats)
    finally:
        big.release()  # 220 MB: free it before the next task


def _device_epoch(ctx, key: str, repeats: int) -> float:
    inputs, layers, _ = NETWORKS[key]
    x, y = network_data(key)
    net = init(InferenceNetwork(ctx, inputs, [FullyConnected(o, act) for o, act in layers]), "xavier", seed=1)
    training = TrainingNetwork(net, x)
    y_dev = cla.to_device(ctx.queue, y)
    try:
        return 1e3 * median_seconds(lambda: (sgd(training, y_dev, "quadratic", 1, RATE), ctx.finish()), repeats)
    finally:
        training.release()
        net.release()


def _host_gemm(multiply, a, repeats: int) -> float:
    return 2 * a.shape[0] ** 3 / median_seconds(lambda: multiply(a), repeats) / 1e9


def _host_copy(copy, dst, src, repeats: int) -> float:
    return 2 * 4 * len(src) / median_seconds(lambda: copy(dst, src), repeats) / 1e9


def _numpy_network(key: str, rng) -> Callable[[], None]:
    inputs, layers, _ = NETWORKS[key]
    x, y = network_data(key)
    widths = [inputs] + [o for o, _ in layers]
    params = [(rng.normal(scale=math.sqrt(2 / (i + o)), size=(o, i)).astype(np.float32), np.zeros(o, np.float32))
              for i, o in zip(widths, widths[1:])]
    return lambda: numpy_epoch(params, [a for _, a in layers], x, y)


def torch_xavier() -> Callable[[], None]:
    import torch

    widths = [SEED_NETWORK[0]] + [o for o, _ in SEED_NETWORK[1]]
    linears = [torch.nn.Linear(i, o) for i, o in zip(widths, widths[1:])]

    def run():
        with torch.no_grad():
            for layer in linears:
                torch.nn.init.xavier_normal_(layer.weight)
                torch.nn.init.zeros_(layer.bias)

    return run


def run(specs: list[str] | None = None, quick: bool = False, progress: bool = True,
        references: bool = True) -> dict:
    """Run the suite on the devices named by `specs` (every device when None) and, with
    references, numpy and PyTorch (when installed) on the CPU. Returns the results (see save)."""
    suite = Suite(quick)
    infos = devices()
    chosen = list({info.index: info for info in (choose(s, infos)[0] for s in specs)}.values()) if specs else infos
    has_torch = importlib.util.find_spec("torch") is not None
    tasks_per_device = len(suite.config["gemm"]) + 3 + len(suite.config["networks"])
    columns, values = [], {}
    with Progress(len(chosen) * tasks_per_device + references * (1 + has_torch), "bench", progress) as bar:
        for info in chosen:
            with Context(info) as ctx:
                values[info.name] = suite.device(ctx, _stepper(bar, ctx.info.name))
                tuned = blas.settings(ctx, "float32").tuned
            columns.append({"name": info.name, "kind": "device", "key": info.key, "index": info.index,
                            "type": info.type, "platform": info.platform, "driver": info.driver_version,
                            "tuned": tuned})
        if references:
            step = _stepper(bar, "CPU")
            values["numpy"] = suite.numpy(step)
            columns.append({"name": "numpy", "kind": "reference", "version": np.__version__})
            found = suite.torch(step)
            if found is not None:
                import torch

                values["PyTorch"] = found
                columns.append({"name": "PyTorch", "kind": "reference", "version": torch.__version__,
                                "threads": torch.get_num_threads()})
    metrics = [{"name": name, "unit": unit, "higher_is_better": higher,
                "values": {column["name"]: values[column["name"]].get(name) for column in columns}}
               for name, (unit, higher) in suite.metrics.items()]
    results = {"format": FORMAT, "quick": quick, "machine": machine(), "columns": columns, "metrics": metrics}
    results["fastest"] = fastest_column(results)
    return results


def _stepper(bar: Progress, where: str) -> Callable[[str], None]:
    """A function that advances the bar as each task starts, saying what runs."""
    return lambda what: bar.update(note=f"{where}: {what}")


def fastest_column(results: dict) -> str | None:
    """The key of the device with the best geometric mean, over the metrics, of its figure
    relative to the best device's (times inverted)."""
    devices_ = [c for c in results["columns"] if c["kind"] == "device"]
    if not devices_:
        return None
    scores = {}
    for column in devices_:
        logs = []
        for metric in results["metrics"]:
            figures = [metric["values"][c["name"]] for c in devices_ if metric["values"].get(c["name"])]
            mine = metric["values"].get(column["name"])
            if not mine or not figures:
                continue
            best = max(figures) if metric["higher_is_better"] else min(figures)
            logs.append(math.log(mine / best if metric["higher_is_better"] else best / mine))
        scores[column["key"]] = sum(logs) / len(logs) if logs else -math.inf
    return max(scores, key=scores.get)


# -- output -------------------------------------------------------------------------------------

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


def save(results: dict, out_dir: Path) -> tuple[Path, Path | None]:
    """Write the results to $CLNET_CACHE_DIR/bench.json (for Context("fastest")) and to
    out_dir/clnet-bench.json with a chart out_dir/clnet-bench.png."""
    text = json.dumps(results, indent=1) + "\n"
    cached = cache_dir() / BENCH_FILE
    temporary = cached.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(cached)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "clnet-bench.json"
    json_path.write_text(text)
    return json_path, chart(results, out_dir / "clnet-bench.png")
