"""Convolutional training steps: clnet beside PyTorch (CPU) in the same run, and beside tinygrad's
OpenCL backend on the same PoCL device; and each convolution's forward and backward passes alone
against torch.nn.functional.conv2d.

    .venv/bin/python bench/bench_conv.py [--device SPEC] [--repeats R] [--rounds N] [--no-tinygrad]

Networks (float32, batch 64, cross-entropy, Adam):
  lenet   LeNet-5 on 1x28x28: conv 6 5x5 (padding 2) relu, max pool 2, conv 16 5x5 relu, max pool 2,
          120 relu, 84 relu, 10
  cifar   3x32x32: conv 32, conv 32, max pool, conv 64, conv 64, max pool (3x3, padding 1, each with
          batch normalization and relu), 10
A step is one mini-batch of `fit` (clnet; its device-resident data gathered by index, as fit does)
or one forward, backward and Adam step (PyTorch on torch.set_num_threads(cores); tinygrad with
TinyJit). clnet's and PyTorch's figures are the median of `rounds` medians of `repeats` epochs
of 8 steps, the two libraries alternating. tinygrad (`pip install tinygrad`) runs in a process of
its own, with DEV=CL on Debian's OpenCL loader and the PoCL library of pyopencl's wheel
registered by absolute path (its own loader crashed), TRAINING=1; its first steps compile its
kernels (minutes), which the table reports apart. Ratios: clnet's time / the other's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyopencl.array as cla

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.nn import Step  # noqa: E402

BATCH, STEPS = 64, 8
SHAPES = {"lenet": (1, 28, 28), "cifar": (3, 32, 32)}


def clnet_layers(key: str) -> list:
    if key == "lenet":
        return [clnet.Conv2d(6, 5, padding=2, activation="relu"), clnet.MaxPool2d(2),
                clnet.Conv2d(16, 5, activation="relu"), clnet.MaxPool2d(2), clnet.Flatten(),
                clnet.FullyConnected(120, "relu"), clnet.FullyConnected(84, "relu"),
                clnet.FullyConnected(10, "softmax")]
    layers = []
    for i, channels in enumerate((32, 32, 64, 64)):
        layers += [clnet.Conv2d(channels, 3, padding=1), clnet.BatchNorm(activation="relu")]
        if i % 2:
            layers.append(clnet.MaxPool2d(2))
    return layers + [clnet.Flatten(), clnet.FullyConnected(10, "softmax")]


def torch_model(key: str):
    import torch.nn as n

    if key == "lenet":
        return n.Sequential(n.Conv2d(1, 6, 5, padding=2), n.ReLU(), n.MaxPool2d(2), n.Conv2d(6, 16, 5), n.ReLU(),
                            n.MaxPool2d(2), n.Flatten(), n.Linear(400, 120), n.ReLU(), n.Linear(120, 84), n.ReLU(),
                            n.Linear(84, 10))
    layers, inputs = [], 3
    for i, channels in enumerate((32, 32, 64, 64)):
        layers += [n.Conv2d(inputs, channels, 3, padding=1), n.BatchNorm2d(channels), n.ReLU()]
        layers += [n.MaxPool2d(2)] if i % 2 else []
        inputs = channels
    return n.Sequential(*layers, n.Flatten(), n.Linear(4096, 10))


def data(key: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(BATCH * STEPS, *SHAPES[key])).astype(np.float32), rng.integers(0, 10, BATCH * STEPS)


def clnet_epoch(ctx, key: str):
    x, y = data(key)
    net = clnet.InferenceNetwork(ctx, SHAPES[key], clnet_layers(key), seed=0)
    x_dev = clnet.ops.arrays.to_device_batch(ctx, x, SHAPES[key], np.float32)
    adam = clnet.Adam(1e-3)
    return lambda: net.fit(x_dev, y, "cross_entropy", 1, BATCH, optimizer=adam, progress=False, seed=0)


def torch_epoch(key: str):
    import torch

    x, y = (torch.tensor(a) for a in data(key))
    model = torch_model(key)
    adam = torch.optim.Adam(model.parameters(), 1e-3)

    def epoch():
        for i in range(STEPS):
            adam.zero_grad()
            rows = slice(i * BATCH, (i + 1) * BATCH)
            torch.nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            adam.step()

    return epoch


def seconds(run, repeats: int) -> float:
    """The median of `repeats` timed runs, after common.median_seconds' warm-up."""
    return common.median_seconds(run, repeats)


def once(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def conv_layers(key: str) -> list[tuple[tuple[int, ...], clnet.Conv2d]]:
    """Each convolution of the network with the shape of its input."""
    found, shape = [], SHAPES[key]
    for layer in clnet_layers(key):
        if isinstance(layer, clnet.Conv2d):
            found.append((shape, layer))
        shape = layer.output_shape(shape)
    return found


def conv_alone(ctx, key: str, repeats: int) -> list[dict]:
    """Each convolution's forward and backward pass (all gradients), clnet and torch's conv2d."""
    return [one_convolution(ctx, key, shape, layer, repeats) for shape, layer in conv_layers(key)]


def one_convolution(ctx, key: str, shape: tuple[int, ...], layer: clnet.Conv2d, repeats: int) -> dict:
    import torch

    net = clnet.InferenceNetwork(ctx, shape, [layer], seed=0)
    x = np.random.default_rng(1).normal(size=(BATCH, *shape)).astype(np.float32)
    built = net.layers[0]
    gradients = dict(zip(["weights", "bias"], net.gradient_buffer.views))
    link = clnet.nn.Link(BATCH, cla.to_device(ctx.queue, x), cla.empty(ctx.queue, x.shape, np.float32), gradients,
                         built.arrays, 0, False)
    trainer = built.training(link)

    def forward():
        trainer.forward(Step())
        ctx.finish()

    def backward():
        trainer.backward()
        ctx.finish()

    forward(), backward()
    xt = torch.tensor(x, requires_grad=True)
    weight = torch.tensor(built.weights.get(), requires_grad=True)
    bias = torch.tensor(built.bias.get(), requires_grad=True)

    def torch_forward():
        return torch.nn.functional.conv2d(xt, weight, bias, layer.stride, layer.padding)

    out = torch_forward()
    gradient = torch.ones_like(out)

    def torch_backward():
        torch.autograd.grad(out, (xt, weight, bias), gradient, retain_graph=True)

    return {"layer": f"{key}: {shape} -> {layer.output_shape(shape)}, {layer.brief()}",
            "clnet_forward": seconds(forward, repeats), "torch_forward": seconds(torch_forward, repeats),
            "clnet_backward": seconds(backward, repeats), "torch_backward": seconds(torch_backward, repeats)}


FUSIONS = {  # what relu is fused into: (the layers with it fused, the same with an Activation layer)
    "convolution": ([clnet.Conv2d(32, 3, padding=1, activation="relu")],
                    [clnet.Conv2d(32, 3, padding=1), clnet.Activation("relu")]),
    "batch norm": ([clnet.Conv2d(32, 3, padding=1), clnet.BatchNorm(activation="relu")],
                   [clnet.Conv2d(32, 3, padding=1), clnet.BatchNorm(), clnet.Activation("relu")]),
}


def fused_activation(ctx, repeats: int, into: str) -> dict:
    """relu fused into the CIFAR network's 32 -> 32 convolution (its epilogue), or into the batch
    norm after it, against the same layers followed by an Activation("relu") layer (a 10-output
    layer after both): a training network's forward and backward passes, the two alternating
    (seconds, and the median of the pairs' ratios fused / separate)."""
    shape = (32, 32, 32)
    x = np.random.default_rng(2).normal(size=(BATCH, *shape)).astype(np.float32)
    steps = {}
    for name, first in zip(("fused", "separate"), FUSIONS[into]):
        net = clnet.InferenceNetwork(ctx, shape, first + [clnet.Flatten(), clnet.FullyConnected(10)], seed=0)
        training = clnet.TrainingNetwork(net, x)
        training.output_gradient.set(np.ones(training.output_gradient.shape, np.float32))

        def step(training=training):
            training.forward()
            training.backward()
            ctx.finish()

        step()
        steps[name] = step
    found = {name: [] for name in steps}
    for _ in range(3 * repeats):
        for name, step in steps.items():
            found[name].append(once(step))
    return {**{name: statistics.median(times) for name, times in found.items()},
            "ratio": statistics.median(f / s for f, s in zip(found["fused"], found["separate"]))}


def tinygrad_step(key: str, steps: int) -> dict | None:
    """tinygrad's step in a process of its own (see the module's docstring), or None."""
    if importlib.util.find_spec("tinygrad") is None:
        return None
    import pyopencl

    pocl = next((Path(pyopencl.__file__).parent / ".libs").glob("libpocl*.so*"), None)
    loader = Path("/usr/lib/x86_64-linux-gnu/libOpenCL.so.1")
    if pocl is None or not loader.exists():
        return None
    with tempfile.TemporaryDirectory() as vendors:
        (Path(vendors) / "pocl.icd").write_text(f"{pocl}\n")
        env = {**os.environ, "DEV": "CL", "TRAINING": "1", "OPENCL_PATH": str(loader), "OCL_ICD_VENDORS": vendors}
        result = subprocess.run([sys.executable, __file__, "--tinygrad-worker", key, str(steps)], env=env,
                                capture_output=True, text=True, timeout=3600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": result.stderr[-2000:]}


def tinygrad_worker(key: str, steps: int) -> None:
    from tinygrad import Device, Tensor, TinyJit, nn
    from tinygrad.nn.optim import Adam

    class LeNet:
        def __init__(self):
            self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
            self.l1, self.l2, self.l3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def __call__(self, x):
            x = self.c2(self.c1(x).relu().max_pool2d(2)).relu().max_pool2d(2)
            return self.l3(self.l2(self.l1(x.flatten(1)).relu()).relu())

    class Cifar:
        def __init__(self):
            chans = [(3, 32), (32, 32), (32, 64), (64, 64)]
            self.convs = [nn.Conv2d(a, b, 3, padding=1) for a, b in chans]
            self.norms = [nn.BatchNorm(b) for _, b in chans]
            self.fc = nn.Linear(4096, 10)

        def __call__(self, x):
            for i, (c, b) in enumerate(zip(self.convs, self.norms)):
                x = b(c(x)).relu()
                x = x.max_pool2d(2) if i % 2 else x
            return self.fc(x.flatten(1))

    model = {"lenet": LeNet, "cifar": Cifar}[key]()
    adam = Adam(nn.state.get_parameters(model), lr=1e-3)
    x, y = data(key)
    x, y = Tensor(x[:BATCH]).realize(), Tensor(y[:BATCH].astype(np.int32)).realize()
    Tensor.training = True

    @TinyJit
    def step(x, y):
        adam.zero_grad()
        loss = model(x).sparse_categorical_crossentropy(y).backward()
        adam.step()
        return loss.realize()

    started = time.perf_counter()
    for _ in range(3):  # TinyJit captures on the second call and replays from the third
        step(x, y).item()
    compile_seconds = time.perf_counter() - started
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step(x, y).item()
        times.append(time.perf_counter() - started)
    print(json.dumps({"device": Device.DEFAULT, "step": statistics.median(times), "warm_up": compile_seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=list(SHAPES), choices=sorted(SHAPES))
    parser.add_argument("--no-tinygrad", action="store_true")
    parser.add_argument("--tinygrad-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tinygrad_worker:
        tinygrad_worker(args.tinygrad_worker[0], int(args.tinygrad_worker[1]))
        return
    import torch

    torch.set_num_threads(os.cpu_count())
    results, alone = {}, []
    with clnet.Context(args.device) as ctx:
        for key in args.only:
            runs = {"clnet": clnet_epoch(ctx, key), "torch": torch_epoch(key)}
            for run in runs.values():
                run()  # builds, records, warms up
            found = {name: [] for name in runs}
            for _ in range(args.rounds):  # alternating, so that both see the machine's slow and fast spells
                for name, run in runs.items():
                    found[name].append(seconds(run, args.repeats) / STEPS)
            results[key] = {name: statistics.median(times) for name, times in found.items()}
            results[key]["rounds"] = found
            alone += conv_alone(ctx, key, args.repeats)
        fusion = {into: fused_activation(ctx, args.repeats, into) for into in FUSIONS}
        info = common.machine(ctx)
    for key in args.only:
        results[key]["tinygrad"] = {"error": "skipped"} if args.no_tinygrad else tinygrad_step(key, 10)
    print(f"ms per training step, float32, batch {BATCH}; clnet on {common.device_line(info)}, PyTorch on "
          f"{os.cpu_count()} threads of {info['cpu']}, tinygrad on DEV=CL (the same PoCL device)\n")
    rows = []
    for key, row in results.items():
        tiny = row["tinygrad"] or {}
        tiny_ms = tiny.get("step", 0) * 1e3 or None
        rows.append([key, row["clnet"] * 1e3, row["torch"] * 1e3, row["clnet"] / row["torch"],
                     tiny_ms or tiny.get("error", "not installed")[:40],
                     row["clnet"] * 1e3 / tiny_ms if tiny_ms else "-", tiny.get("warm_up", "-")])
    print(common.table(["network", "clnet ms", "torch ms", "clnet/torch", "tinygrad ms", "clnet/tinygrad",
                        "tinygrad warm-up s"], rows))
    print("\neach convolution alone, ms (backward: all of its gradients)\n")
    print(common.table(["layer", "clnet fwd", "torch fwd", "ratio", "clnet bwd", "torch bwd", "ratio"],
                       [[r["layer"], r["clnet_forward"] * 1e3, r["torch_forward"] * 1e3,
                         r["clnet_forward"] / r["torch_forward"], r["clnet_backward"] * 1e3,
                         r["torch_backward"] * 1e3, r["clnet_backward"] / r["torch_backward"]] for r in alone]))
    for into, found in fusion.items():
        print(f"\nrelu fused into the 32 -> 32 layer's {into}: {found['fused'] * 1e3:.1f} ms a forward and backward "
              f"pass, as a layer of its own: {found['separate'] * 1e3:.1f} ms (pairs: {found['ratio']:.3f})")
    path = common.write_json("conv", {"steps": results, "convolutions": alone, "fused_activation": fusion,
                                      "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
