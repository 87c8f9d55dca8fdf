"""`clnet bench`: the same suite on every OpenCL device, beside numpy and PyTorch on the CPU.

Metrics (float32): GEMM GFLOP/s at a few sizes, memory bandwidth of a copy (GB/s), random
numbers per second (uniform, normal), the time to initialize the seed article's large network
(55.01 M weights, xavier), and ms per SGD epoch of the training benchmark networks. Every figure
is a median of repeated runs after a warm-up, each run ended by queue.finish(). Each device is
measured in a process of its own (app/isolated.py), apart from the others and the references.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable

import numpy as np
import pyopencl.array as cla
from tqdm.auto import tqdm

from ...nn import FullyConnected, TrainingNetwork, init
from ...ops import blas, memory
from ...ops.arrays import to_device_batch
from ...ops.rng import Philox
from ...runtime import fastest
from ...runtime.context import Context
from ...runtime.device import choose, devices
from ...train.loops import sgd
from ...train.model import InferenceNetwork
from ...train.optimizers import SGD, Adam
from ..isolated import run_alone
from .references import (
    RATE,
    SEED_NETWORK,
    TRAINING_NETWORKS,
    has_numpy_reference,
    numpy_network,
    numpy_xavier,
    torch_training,
    torch_xavier,
    training_data,
)
from .timing import machine, median_seconds

FORMAT = 1
SUITES = {  # init: whether to time the seed network's initialization (55.01 M weights); networks: of
    # references.TRAINING_NETWORKS, the four reference training steps of issue 13
    "quick": {"gemm": (512, 1024), "copy": 16_000_000, "random": 10_000_000, "networks": ("mlp", "digits"),
              "repeats": 3, "init": True},
    "full": {"gemm": (256, 512, 1024, 2048), "copy": 64_000_000, "random": 55_010_000,
             "networks": ("mlp", "seed", "digits", "mnist"), "repeats": 5, "init": True},
}


def network_metric(key: str) -> str:
    """The row of a training network: "SGD epoch 784-512-10, batch 256", "Adam epoch 64-128-10, 45 x 32"."""
    inputs, layers, _, optimizer, batch, samples = TRAINING_NETWORKS[key]
    shape = "-".join([str(inputs)] + [str(o) for o, _ in layers])
    batches = f"batch {batch}" if batch == samples else f"{-(-samples // batch)} x {batch}"
    return f"{'SGD' if optimizer == 'sgd' else 'Adam'} epoch {shape}, {batches}"


class Suite:
    """Metric name -> (unit, higher is better) in the order of the table, and the tasks."""

    def __init__(self, quick: bool, config: dict | None = None):
        self.config = config or SUITES["quick" if quick else "full"]
        self.metrics: dict[str, tuple[str, bool]] = {}
        for n in self.config["gemm"]:
            self.metrics[f"GEMM n={n}"] = ("GFLOP/s", True)
        self.metrics["copy bandwidth"] = ("GB/s", True)
        self.metrics["kernel launch, queued"] = ("us", False)
        self.metrics["uniform random numbers"] = ("M/s", True)
        self.metrics["normal random numbers"] = ("M/s", True)
        if self.config["init"]:
            self.metrics["init 55.01 M weights (xavier)"] = ("ms", False)
        for key in self.config["networks"]:
            self.metrics[network_metric(key)] = ("ms", False)

    def device(self, ctx, step: Callable[[str], None]) -> dict[str, float]:
        """Every metric on one device."""
        repeats, found = self.config["repeats"], {}
        for n in self.config["gemm"]:
            step(f"GEMM n={n}")
            found[f"GEMM n={n}"] = _device_gemm(ctx, n, repeats)
        step("copy bandwidth")
        found["copy bandwidth"] = _device_copy(ctx, self.config["copy"], repeats)
        found["kernel launch, queued"] = _device_launch(ctx, repeats)
        step("random numbers")
        found["uniform random numbers"], found["normal random numbers"] = _device_random(
            ctx, self.config["random"], repeats)
        if self.config["init"]:
            step("init 55.01 M weights")
            found["init 55.01 M weights (xavier)"] = _device_init(ctx, repeats)
        for key, metric in self.network_metrics():
            step(metric)
            found[metric] = _device_epoch(ctx, key, _epoch_repeats(key, repeats))
        return found

    def network_metrics(self) -> list[tuple[str, str]]:
        return [(key, network_metric(key)) for key in self.config["networks"]]

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
        if self.config["init"]:
            widths = [SEED_NETWORK[0]] + [o for o, _ in SEED_NETWORK[1]]
            found["init 55.01 M weights (xavier)"] = 1e3 * median_seconds(
                numpy_xavier(list(zip(widths[1:], widths)), rng), repeats)
        for key, metric in self.network_metrics():
            if has_numpy_reference(key):
                found[metric] = 1e3 * median_seconds(numpy_network(key, rng), _epoch_repeats(key, repeats))
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
        if self.config["init"]:
            found["init 55.01 M weights (xavier)"] = 1e3 * median_seconds(torch_xavier(), repeats)
        for key, metric in self.network_metrics():
            found[metric] = 1e3 * median_seconds(torch_training(key, *training_data(key)), _epoch_repeats(key, repeats))
        return found


def measure_device(key: str, config: dict) -> tuple[dict[str, float], bool]:
    """The suite on the device whose DeviceInfo.key is `key`, and whether its GEMM is tuned; run in
    a process of its own by `run`."""
    info = next(info for info in devices() if info.key == key)
    with Context(info) as ctx:
        return Suite(False, config).device(ctx, lambda what: None), blas.settings(ctx, "float32").tuned


def _epoch_repeats(key: str, repeats: int) -> int:
    return max(2, repeats - 2) if key == "seed" else repeats  # the seed network's epoch takes seconds


def _device_gemm(ctx, n: int, repeats: int) -> float:
    a = cla.to_device(ctx.queue, np.random.default_rng(n).uniform(-1, 1, (n, n)).astype(np.float32))
    c = cla.empty(ctx.queue, (n, n), np.float32)
    return 2 * n**3 / median_seconds(lambda: (blas.gemm(ctx, a, a, c), ctx.finish()), repeats) / 1e9


def _device_copy(ctx, size: int, repeats: int) -> float:
    src, dst = cla.empty(ctx.queue, size, np.float32), cla.empty(ctx.queue, size, np.float32)
    memory.fill(ctx, src, 1.0)
    return 2 * 4 * size / median_seconds(lambda: (memory.copy(ctx, src, dst), ctx.finish()), repeats) / 1e9


def _device_launch(ctx, repeats: int, launches: int = 200) -> float:
    """us per launch of a kernel with almost no work (a fill of 8 elements), `launches` queued then
    waited for: what each of the dozens of launches of a small training step costs."""
    a = cla.empty(ctx.queue, 8, np.float32)

    def run():
        for _ in range(launches):
            memory.fill(ctx, a, 1.0)
        ctx.finish()

    return 1e6 * median_seconds(run, repeats) / launches


def _device_random(ctx, size: int, repeats: int) -> tuple[float, float]:
    g, a = Philox(ctx, 1), cla.empty(ctx.queue, size, np.float32)
    uniform = size / median_seconds(lambda: (g.uniform(a), ctx.finish()), repeats) / 1e6
    normal = size / median_seconds(lambda: (g.normal(a), ctx.finish()), repeats) / 1e6
    return uniform, normal


def _device_init(ctx, repeats: int) -> float:
    inputs, layers = SEED_NETWORK
    big = InferenceNetwork(ctx, inputs, [FullyConnected(o, act) for o, act in layers], init=None)
    try:
        return 1e3 * median_seconds(lambda: (init(big, "xavier", seed=1), ctx.finish()), repeats)
    finally:
        big.release()  # 220 MB: free it before the next task


def clnet_epoch(ctx, key: str) -> tuple[Callable[[], None], InferenceNetwork]:
    """One epoch of TRAINING_NETWORKS[key] on the device, waited for, and its network (for
    `release`): a one-batch SGD network through sgd on a TrainingNetwork, the others through fit,
    on data copied to the device once. bench/bench_train.py times the same epochs."""
    inputs, layers, cost, optimizer, batch, samples = TRAINING_NETWORKS[key]
    x, y = training_data(key)
    net = InferenceNetwork(ctx, inputs, [FullyConnected(o, act) for o, act in layers], init="xavier", seed=1)
    if optimizer == "sgd" and batch == samples:
        training = TrainingNetwork(net, x)
        y_dev = to_device_batch(ctx, y, net.outputs, net.dtype, "y")
        return (lambda: (sgd(training, y_dev, cost, 1, RATE), ctx.finish())), net
    x_dev = to_device_batch(ctx, x, inputs, net.dtype)
    step = SGD(RATE) if optimizer == "sgd" else Adam(1e-3)
    return (lambda: (net.fit(x_dev, y, cost, 1, batch, optimizer=step, progress=False, seed=0), ctx.finish())), net


def _device_epoch(ctx, key: str, repeats: int) -> float:
    epoch, net = clnet_epoch(ctx, key)
    try:
        return 1e3 * median_seconds(epoch, repeats)
    finally:
        net.release()


def _host_gemm(multiply, a, repeats: int) -> float:
    return 2 * a.shape[0] ** 3 / median_seconds(lambda: multiply(a), repeats) / 1e9


def _host_copy(copy, dst, src, repeats: int) -> float:
    return 2 * 4 * len(src) / median_seconds(lambda: copy(dst, src), repeats) / 1e9


def run(specs: list[str] | None = None, quick: bool = False, progress: bool = True,
        references: bool = True) -> dict:
    """Run the suite on the devices named by `specs` (every device when None) and, with
    references, numpy and PyTorch (when installed) on the CPU. Records the fastest device for
    Context("fastest") (clnet.runtime.fastest) and returns the results (see report.save)."""
    suite = Suite(quick)
    infos = devices()
    chosen = list({info.index: info for info in (choose(s, infos)[0] for s in specs)}.values()) if specs else infos
    has_torch = importlib.util.find_spec("torch") is not None
    columns, values = [], {}
    with tqdm(total=len(chosen) + references * (1 + has_torch), desc="bench", disable=not progress) as bar:
        for info in chosen:
            name = column_name(info)
            bar.set_postfix_str(name, refresh=True)
            values[name], tuned = run_alone(measure_device, info.key, suite.config)
            bar.update()
            columns.append({"name": name, "device": info.name, "kind": "device", "key": info.key, "index": info.index,
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
    training = {metric for _, metric in suite.network_metrics()}
    metrics = [{"name": name, "unit": unit, "higher_is_better": higher, "training": name in training,
                "values": {column["name"]: values[column["name"]].get(name) for column in columns}}
               for name, (unit, higher) in suite.metrics.items()]
    results = {"format": FORMAT, "quick": quick, "machine": machine(), "columns": columns, "metrics": metrics}
    results["fastest"] = fastest_column(results)
    for info in chosen:
        if info.key == results["fastest"]:
            fastest.remember(info, "clnet bench")
    return results


def column_name(info) -> str:
    """A device's column: its name and, short, its platform (one CPU can be on two platforms)."""
    platform = "PoCL" if info.is_pocl else info.platform.replace("(R)", "").replace("(TM)", "")
    return f"{info.name} ({' '.join(platform.split())})"


def _stepper(bar: tqdm, where: str) -> Callable[[str], None]:
    """A function that advances the bar as each task starts, saying what runs."""

    def step(what: str) -> None:
        bar.set_postfix_str(f"{where}: {what}", refresh=False)
        bar.update()

    return step


def fastest_column(results: dict) -> str | None:
    """The key of the device that trains fastest: the best geometric mean, over the training
    metrics (ms per epoch of the reference networks), of its figure relative to the best device's
    (times inverted); over every metric when the table has no training metric."""
    devices_ = [c for c in results["columns"] if c["kind"] == "device"]
    if not devices_:
        return None
    training = [m for m in results["metrics"] if m.get("training")]
    scores = {}
    for column in devices_:
        logs = []
        for metric in training or results["metrics"]:
            figures = [metric["values"][c["name"]] for c in devices_ if metric["values"].get(c["name"])]
            mine = metric["values"].get(column["name"])
            if not mine or not figures:
                continue
            best = max(figures) if metric["higher_is_better"] else min(figures)
            logs.append(math.log(mine / best if metric["higher_is_better"] else best / mine))
        scores[column["key"]] = sum(logs) / len(logs) if logs else -math.inf
    return max(scores, key=scores.get)
