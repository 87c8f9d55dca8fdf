"""Where a CNN training step goes, layer by layer and pass by pass, in clnet and in PyTorch (issue
34's first item: measure before shaping kernels).

    .venv/bin/python bench/profile_step.py [--only lenet cifar] [--repeats R]

The networks are bench_conv's (float32, batch 64, cross-entropy, Adam). clnet: each layer's
training half run alone (forward, then backward: its parameter gradients and dC/dx), with a wait
after each, so a row is that layer's kernels plus one wait; then the cost, the optimizer step and
the whole replayed step (training.forward, the cost, backward, Adam: what `fit` queues). "parts
- step" is the sum of the rows less the step: the waits per layer that the step does not have,
less what replaying the recorded launches saves. PyTorch runs in a process of its own
(torch.set_num_threads(cores)): each module's forward alone and its backward alone
(autograd.grad of its output, every gradient), the loss, Adam, and a whole step. Each figure is
the median of `repeats` runs after a warm-up; ratio = clnet / PyTorch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyopencl.array as cla

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_conv  # noqa: E402
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.nn import Step  # noqa: E402
from clnet.ops import costs  # noqa: E402


def clnet_profile(ctx, key: str, repeats: int) -> dict:
    x, y = bench_conv.data(key)
    x, labels = x[:bench_conv.BATCH], y[:bench_conv.BATCH]
    net = clnet.InferenceNetwork(ctx, bench_conv.SHAPES[key], bench_conv.clnet_layers(key), seed=0)
    training = clnet.TrainingNetwork(net, x)
    targets = cla.to_device(ctx.queue, np.eye(10, dtype=np.float32)[labels])
    adam = clnet.Adam(1e-3)
    rows = []

    def timed(run) -> float:
        def once():
            run()
            ctx.finish()
        return common.median_seconds(once, repeats)

    def cost():
        costs.output_delta(ctx, "cross_entropy", training.output, targets, training.output_gradient,
                           net.output_activation)

    for index, trainer in enumerate(training.layers):
        rows.append({"layer": f"{index} {net.specs[index].brief()}",
                     "forward": timed(lambda trainer=trainer: trainer.forward(Step())), "backward": None})
    cost_time = timed(cost)
    for index, trainer in reversed(list(enumerate(training.layers))):
        rows[index]["backward"] = timed(trainer.backward)
    adam_time = timed(lambda: adam.step(net.parameter_buffer, net.gradient_buffer))

    def step():
        training.forward()
        cost()
        training.backward(skip_output_derivative=True)
        adam.step(net.parameter_buffer, net.gradient_buffer)

    return {"layers": rows, "cost": cost_time, "optimizer": adam_time, "step": timed(step)}


def torch_profile(key: str, repeats: int) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    x, y = bench_conv.data(key)
    x, labels = torch.tensor(x[:bench_conv.BATCH]), torch.tensor(y[:bench_conv.BATCH])
    model = bench_conv.torch_model(key)
    adam = torch.optim.Adam(model.parameters(), 1e-3)
    rows, value = [], x
    for index, module in enumerate(model):
        given = value.detach().requires_grad_(True)
        out = module(given)
        # the first layer's dC/dx is not needed (clnet does not compute it either)
        wrt = ([given] if index else []) + list(module.parameters())
        gradient = torch.ones_like(out)
        rows.append({"layer": f"{index} {type(module).__name__}",
                     "forward": common.median_seconds(lambda m=module, g=given: m(g), repeats),
                     "backward": common.median_seconds(lambda o=out, w=wrt, d=gradient: torch.autograd.grad(
                         o, w, d, retain_graph=True), repeats)})
        value = out.detach()

    def step():
        adam.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        adam.step()

    step()
    return {"layers": rows, "optimizer": common.median_seconds(adam.step, repeats),
            "step": common.median_seconds(step, repeats)}


def show(key: str, ours: dict, theirs: dict) -> str:
    """One table: clnet's layers beside PyTorch's (PyTorch's modules split a clnet layer's fused
    activation out: their rows are listed after clnet's)."""
    table_rows = [[row["layer"], row["forward"] * 1e3, row["backward"] * 1e3] for row in ours["layers"]]
    parts = sum(row["forward"] + row["backward"] for row in ours["layers"]) + ours["cost"] + ours["optimizer"]
    table_rows += [["cost (cross-entropy delta)", ours["cost"] * 1e3, ""], ["Adam", ours["optimizer"] * 1e3, ""],
                   ["whole step (replayed)", ours["step"] * 1e3, ""],
                   ["parts - step", (parts - ours["step"]) * 1e3, ""]]
    text = f"clnet, {key} (ms)\n" + common.table(["layer", "forward", "backward"], table_rows)
    torch_rows = [[row["layer"], row["forward"] * 1e3, row["backward"] * 1e3] for row in theirs["layers"]]
    torch_rows += [["Adam", theirs["optimizer"] * 1e3, ""], ["whole step", theirs["step"] * 1e3, ""]]
    text += f"\n\nPyTorch, {key} (ms)\n" + common.table(["module", "forward", "backward"], torch_rows)
    text += f"\n\nstep ratio clnet / PyTorch: {ours['step'] / theirs['step']:.2f}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=list(bench_conv.SHAPES), choices=sorted(bench_conv.SHAPES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default=None)
    parser.add_argument("--torch-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        print(json.dumps(torch_profile(args.torch_worker[0], int(args.torch_worker[1]))))
        return
    found = {}
    with clnet.Context(args.device) as ctx:
        print(f"device: {ctx.info.name} ({ctx.info.platform}, {ctx.info.driver_version}), native float width "
              f"{ctx.info.native_float_width}")
        for key in args.only:
            ours = clnet_profile(ctx, key, args.repeats)
            worker = subprocess.run([sys.executable, __file__, "--torch-worker", key, str(args.repeats)],
                                    capture_output=True, text=True, check=True)
            theirs = json.loads(worker.stdout.strip().splitlines()[-1])
            found[key] = {"clnet": ours, "torch": theirs}
            print("\n" + show(key, ours, theirs), flush=True)
        path = common.write_json("profile_step", {"machine": common.machine(ctx), "networks": found})
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
