"""torchvision's classifiers imported through ONNX: clnet's training step and inference beside
PyTorch's (CPU) on the same cores, in the same run; and their depthwise and 1x1 convolutions
alone against torch.nn.functional.conv2d.

    .venv/bin/python bench/bench_zoo.py [--device SPEC] [--only NAME ...] [--repeats R] [--rounds N]

Networks: dlprimitives' five (alexnet, resnet18, resnet50, vgg16, mobilenet_v2) and densenet121
and efficientnet_b0, random weights, float32, 1000 classes, batch 16 of 3x64x64 images. A
training step is one mini-batch of `fit` (clnet: cross-entropy on the logits, SGD with momentum
0.9 at a rate of 1e-5, so that the repeated epochs never diverge; batch statistics; its data on
the device, gathered by index as fit does) or one forward, backward and SGD step of the PyTorch
model in train mode (torch.set_num_threads(cores); dropout set to 0, since the ONNX export, an
inference graph, has none); inference is one batch, PyTorch in eval mode under no_grad. alexnet
and vgg16 are exported at 224 x 224 without their adaptive pooling, which clnet's
AdaptiveAvgPool2d then does at 64 x 64 (clnet.app.torchvision_models).
Times: the median of `rounds` medians of `repeats` runs, the libraries alternating. Ratios:
clnet's time / PyTorch's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.app import torchvision_models  # noqa: E402

NETWORKS = ("alexnet", "resnet18", "resnet50", "vgg16", "mobilenet_v2", "densenet121", "efficientnet_b0")
BATCH, SIZE, STEPS = 16, 64, 2


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH * STEPS, 3, SIZE, SIZE)).astype(np.float32), rng.integers(0, 1000, BATCH * STEPS)


def runs(ctx, name: str) -> tuple[dict, clnet.InferenceNetwork]:
    """The four timed runs of one network: clnet's and PyTorch's training epochs and inference."""
    import torch

    model, net = torchvision_models.imported(ctx, name, SIZE)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    x, y = data()
    x_dev = clnet.ops.arrays.to_device_batch(ctx, x, (3, SIZE, SIZE), np.float32)
    sgd = clnet.SGD(1e-5, momentum=0.9)  # small: the timed epochs repeat on one batch, and must not diverge
    xt, yt = torch.tensor(x), torch.tensor(y)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)

    def torch_epoch():
        model.train()
        for i in range(STEPS):
            optimizer.zero_grad()
            rows = slice(i * BATCH, (i + 1) * BATCH)
            torch.nn.functional.cross_entropy(model(xt[rows]), yt[rows]).backward()
            optimizer.step()

    def torch_inference():
        model.eval()
        with torch.no_grad():
            model(xt[:BATCH])

    def clnet_inference():
        net(x_dev[:BATCH]).get()

    return {"clnet train": lambda: net.fit(x_dev, y, "cross_entropy", 1, BATCH, optimizer=sgd, progress=False),
            "torch train": torch_epoch, "clnet infer": clnet_inference, "torch infer": torch_inference}, net


def convolutions(net: clnet.InferenceNetwork) -> dict[str, int]:
    """How many of the network's convolutions are depthwise, 1x1 or other (inside blocks too)."""
    found = {"depthwise": 0, "1x1": 0, "other": 0}

    def walk(specs):
        for spec in specs:
            if isinstance(spec, clnet.nn.Branches):
                for branch in spec.branches:
                    walk(branch)
            elif isinstance(spec, clnet.Conv2d):
                kind = "depthwise" if spec.groups > 1 else "1x1" if spec.kernel_size == (1, 1) else "other"
                found[kind] += 1
    walk(net.specs)
    return found


CONVOLUTIONS = {  # (input shape, layer): mobilenet_v2's and efficientnet's typical shapes at 64 x 64
    "depthwise 3x3, 96 ch, 16x16": ((96, 16, 16), clnet.Conv2d(96, 3, padding=1, groups=96, bias=False)),
    "depthwise 3x3 s2, 144 ch, 16x16": ((144, 16, 16), clnet.Conv2d(144, 3, stride=2, padding=1, groups=144,
                                                                     bias=False)),
    "1x1, 32 -> 192, 16x16": ((32, 16, 16), clnet.Conv2d(192, 1, bias=False)),
    "1x1, 192 -> 32, 16x16": ((192, 16, 16), clnet.Conv2d(32, 1, bias=False)),
    "3x3, 64 -> 64, 16x16": ((64, 16, 16), clnet.Conv2d(64, 3, padding=1, bias=False)),
}


def convolution_alone(ctx, label: str, repeats: int) -> dict:
    """One convolution's forward and backward passes (batch 16) against conv2d's."""
    import torch

    shape, layer = CONVOLUTIONS[label]
    net = clnet.InferenceNetwork(ctx, shape, [layer], seed=0)
    x = np.random.default_rng(1).normal(size=(BATCH, *shape)).astype(np.float32)
    training = clnet.TrainingNetwork(net, x)
    training.output_gradient.set(np.ones(training.output_gradient.shape, np.float32))
    weights = torch.tensor(net.layers[0].weights.get(), requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    options = {"stride": layer.stride, "padding": layer.padding, "groups": layer.groups}

    def torch_forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, weights, **options)

    def torch_backward():
        torch.nn.functional.conv2d(xt, weights, **options).sum().backward()

    def clnet_backward():
        training.forward()
        training.backward()
        ctx.finish()

    times = {name: common.median_seconds(run, repeats) for name, run in (
        ("clnet forward", lambda: net(training.x).get()), ("torch forward", torch_forward),
        ("clnet forward+backward", clnet_backward), ("torch forward+backward", torch_backward))}
    return {"layer": label, **times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count())
    torchvision_models.load_torchvision()
    results, alone = {}, []
    with clnet.Context(args.device) as ctx:
        for name in args.only:
            timed, net = runs(ctx, name)
            for run in timed.values():
                run()  # builds, records, warms up
            found = {kind: [] for kind in timed}
            for _ in range(args.rounds):  # alternating, so that both see the machine's slow and fast spells
                for kind, run in timed.items():
                    found[kind].append(common.median_seconds(run, args.repeats))
            results[name] = {kind: statistics.median(times) / (STEPS if "train" in kind else 1)
                             for kind, times in found.items()}
            results[name]["convolutions"] = convolutions(net)
            net.release()
            print(f"{name}: {results[name]}", flush=True)
        alone = [convolution_alone(ctx, label, args.repeats) for label in CONVOLUTIONS]
        info = common.machine(ctx)
    print(f"\nms per step, float32, batch {BATCH} of 3x{SIZE}x{SIZE}, 1000 classes; clnet on "
          f"{common.device_line(info)}, PyTorch on {os.cpu_count()} threads of {info['cpu']}\n")
    print(common.table(["network", "clnet train", "torch train", "ratio", "clnet infer", "torch infer", "ratio",
                        "convolutions (dw/1x1/other)"],
                       [[name, r["clnet train"] * 1e3, r["torch train"] * 1e3, r["clnet train"] / r["torch train"],
                         r["clnet infer"] * 1e3, r["torch infer"] * 1e3, r["clnet infer"] / r["torch infer"],
                         "/".join(str(n) for n in r["convolutions"].values())] for name, r in results.items()]))
    print("\neach convolution alone, ms (batch 16; backward: the layer's forward and backward passes)\n")
    print(common.table(["layer", "clnet fwd", "torch fwd", "ratio", "clnet fwd+bwd", "torch fwd+bwd", "ratio"],
                       [[r["layer"], r["clnet forward"] * 1e3, r["torch forward"] * 1e3,
                         r["clnet forward"] / r["torch forward"], r["clnet forward+backward"] * 1e3,
                         r["torch forward+backward"] * 1e3,
                         r["clnet forward+backward"] / r["torch forward+backward"]] for r in alone]))
    path = common.write_json("zoo", {"networks": results, "convolutions": alone, "machine": info,
                                     "batch": BATCH, "size": SIZE})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
