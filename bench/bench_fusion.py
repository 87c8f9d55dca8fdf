"""Fused against unfused: every fused kernel of a training step, timed beside the kernels it
replaces on the layer shapes of the four reference networks (bench/bench_train.py), float32.

    .venv/bin/python bench/bench_fusion.py [--device SPEC] [--rounds R]

  forward    f(x @ W.T + b) in the GEMM's epilogue      vs  GEMM, add_bias, activation
  backward   f'(a) and the bias gradient in one pass     vs  activation backward, bias_gradient
  cost       the cost and its gradient in one launch     vs  cost sum, difference
  passes     a layer's forward and backward replayed     vs  the same launches made from Python
Each figure is the median over rounds of the time for `calls` back-to-back calls ended by one
queue.finish(), the two variants alternating; ratio = fused / unfused (below 1: fused wins).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyopencl.array as cla

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.app.bench.references import TRAINING_NETWORKS  # noqa: E402
from clnet.ops import activations, bias, blas, costs, dense  # noqa: E402


def timed(ctx, run, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run()
    ctx.finish()
    return (time.perf_counter() - start) / calls


def compare(ctx, fused, unfused, rounds: int, calls: int) -> tuple[float, float]:
    fused(), unfused(), ctx.finish()
    times = {fused: [], unfused: []}
    for _ in range(rounds):
        for run in (fused, unfused):
            times[run].append(timed(ctx, run, calls))
    return statistics.median(times[fused]), statistics.median(times[unfused])


def layer_shapes() -> list[tuple[str, int, int, int, str, str | None]]:
    """(network, batch, inputs, outputs, activation, cost of an output layer or None) of every
    layer of the reference networks."""
    found = []
    for key, (inputs, layers, cost, _, batch, _) in TRAINING_NETWORKS.items():
        for i, (outputs, name) in enumerate(layers):
            found.append((key, batch, inputs, outputs, name, cost if i == len(layers) - 1 else None))
            inputs = outputs
    return found


def layer_figures(ctx, batch, inputs, outputs, name, cost, rounds) -> dict[str, tuple[float, float]]:
    """(fused, unfused) seconds per call of the forward, backward and cost kernels of one layer."""
    dtype, rng = np.dtype(np.float32), np.random.default_rng(0)
    x = cla.to_device(ctx.queue, rng.uniform(size=(batch, inputs)).astype(dtype))
    w = cla.to_device(ctx.queue, (rng.normal(size=(outputs, inputs)) / np.sqrt(inputs)).astype(dtype))
    b, db = (cla.to_device(ctx.queue, rng.normal(size=outputs).astype(dtype)) for _ in range(2))
    out, z, g, y = (cla.to_device(ctx.queue, rng.uniform(size=(batch, outputs)).astype(dtype)) for _ in range(4))
    value = cla.zeros(ctx.queue, 1, dtype)
    calls = max(1, int(2e8 // (batch * inputs * outputs)))  # about 0.1 s per variant

    def unfused_forward():
        blas.gemm(ctx, x, w, z, trans_b=True)
        bias.add_bias(ctx, z, b)
        activations.forward(ctx, name, z, out)

    def unfused_backward():
        activations.backward(ctx, name, out, g)
        bias.bias_gradient(ctx, g, db)

    def unfused_cost():
        costs.value_into(ctx, cost, name, out, z, y, value)
        costs.output_delta(ctx, cost, out, y, g)

    found = {"forward": compare(ctx, lambda: dense.forward(ctx, x, w, b, name, out, z), unfused_forward, rounds,
                                calls)}
    if name != "softmax":
        found["backward"] = compare(ctx, lambda: dense.backward_bias(ctx, name, out, g, db), unfused_backward,
                                    rounds, 20 * calls)
    if cost is not None:
        found["cost"] = compare(ctx, lambda: costs.value_into(ctx, cost, name, out, z, y, value, delta=g),
                                unfused_cost, rounds, 200)
    return found


def passes_figures(ctx, key: str, rounds: int) -> tuple[float, float]:
    """(replayed, live) seconds of a training network's forward and backward passes."""
    inputs, layers, _, _, batch, _ = TRAINING_NETWORKS[key]
    net = clnet.InferenceNetwork(ctx, inputs, [clnet.FullyConnected(o, a) for o, a in layers])
    replayed, live = (clnet.TrainingNetwork(net, np.zeros((batch, inputs), np.float32)) for _ in range(2))
    live._run = lambda key, queue_pass: queue_pass()  # every launch made live
    widths = [inputs] + [o for o, _ in layers]
    calls = max(1, int(1e9 // (batch * sum(a * b for a, b in zip(widths, widths[1:])))))
    return compare(ctx, lambda: (replayed.forward(), replayed.backward()), lambda: (live.forward(), live.backward()),
                   rounds, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    record = []
    with clnet.Context(args.device) as ctx:
        for key, batch, inputs, outputs, name, cost in layer_shapes():
            label = f"{key}: {batch} x {inputs} -> {outputs} {name}"
            for what, (fused, unfused) in layer_figures(ctx, batch, inputs, outputs, name, cost, args.rounds).items():
                record.append({"what": what, "shape": label, "fused": fused, "unfused": unfused})
        for key in TRAINING_NETWORKS:
            fused, unfused = passes_figures(ctx, key, args.rounds)
            record.append({"what": "passes", "shape": f"{key}: forward and backward", "fused": fused,
                           "unfused": unfused})
        info = common.machine(ctx)
    rows = [[r["what"], r["shape"], r["fused"] * 1e6, r["unfused"] * 1e6, r["fused"] / r["unfused"]] for r in record]
    print(f"us per call, float32, {info['device']['name']}; medians of {args.rounds} alternating rounds\n")
    print(common.table(["kernel", "shape", "fused us", "unfused us", "fused/unfused"], rows))
    path = common.write_json("fusion", {"results": record, "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
