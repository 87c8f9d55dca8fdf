"""Data-parallel training over MPI: samples per second on 1 rank and on 2 ranks, one PoCL thread
each, measured in one run, and the time each step spends averaging gradients (Allreduce).

    .venv/bin/python bench/bench_distributed.py [--only NAME] [--rounds R]

It starts `mpiexec -n 1` and `mpiexec -n 2` of itself in turns (R rounds, medians), each rank with
POCL_MAX_PTHREAD_COUNT=1. Networks (float32, SGD, quadratic cost on softmax-free outputs):
  wide     2000 -> 1000 tanh -> 10 softmax (cross-entropy), global batch 2048
  wide256  the same, global batch 256
  small    784 -> 512 tanh -> 10 sigmoid, global batch 256
  large    10000 -> 5000 tanh -> 1000 sigmoid -> 10 sigmoid, global batch 1000 (the seed's network)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402

NETWORKS = {  # inputs, layers, cost, global batch, samples (steps per epoch = samples / batch)
    "wide": (2000, [(1000, "tanh"), (10, "softmax")], "cross_entropy", 2048, 4096),
    "wide256": (2000, [(1000, "tanh"), (10, "softmax")], "cross_entropy", 256, 2048),
    "small": (784, [(512, "tanh"), (10, "sigmoid")], "quadratic", 256, 2048),
    "large": (10000, [(5000, "tanh"), (1000, "sigmoid"), (10, "sigmoid")], "quadratic", 1000, 1000),
}
EPOCHS = {"large": 1}  # timed epochs after one warm-up epoch; 2 for the others


def worker(name: str, independent: bool) -> None:
    """One measurement under mpiexec: rank 0 prints a JSON line. independent: every rank trains
    the whole workload alone, at the same time as the others (the machine's parallel ceiling)."""
    inputs, layers, cost, batch, samples = NETWORKS[name]
    world = clnet.distributed.World()
    together = None if independent else world
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(samples, inputs)).astype(np.float32)
    y = rng.integers(0, 10, samples) if cost == "cross_entropy" else np.full((samples, 10), 0.33, np.float32)
    with world.context("pocl") as ctx:
        net = clnet.InferenceNetwork(ctx, inputs, [clnet.FullyConnected(o, a) for o, a in layers])
        fit = dict(cost=cost, batch_size=batch, optimizer=clnet.SGD(0.05), progress=False, world=together)
        net.fit(x, y, epochs=1, **fit)  # warm-up: builds kernels, warms the cores
        epochs = EPOCHS.get(name, 2)
        world.allreduce_seconds = world.copy_seconds = 0.0
        world.comm.Barrier()
        started = time.perf_counter()
        net.fit(x, y, epochs=epochs, **fit)
        seconds = time.perf_counter() - started
        steps = epochs * -(-samples // batch)
        averaging = world.comm.allreduce(world.allreduce_seconds) / world.size
        copying = world.comm.allreduce(world.copy_seconds) / world.size
        rate = epochs * samples / seconds
        if independent:  # the machine's throughput: every rank's samples count
            rate = world.comm.allreduce(rate)
        if world.rank == 0:
            print(json.dumps({"samples_per_s": rate, "step_s": seconds / steps,
                              "allreduce_per_step_s": averaging / steps, "copy_per_step_s": copying / steps,
                              "parameters": int(sum(p.size for p in net.parameters()))}), flush=True)


LATENCY_S = 50e-6  # per message of a ring Allreduce over TCP on Ethernet: assumed, not measured here


def model(name: str, one: dict, two: dict) -> str:
    """A step's time on p machines, each computing as one rank here: the global batch's compute
    split p ways, the device-host copies measured here, and a ring Allreduce of the gradients
    (2 (p - 1) / p of their bytes over the link, 2 (p - 1) latencies). Efficiency = T(1) / (p T(p))."""
    _, _, _, batch, _ = NETWORKS[name]
    compute = one["step_s"]  # the whole global batch on one rank
    nbytes = 4 * one["parameters"]
    lines = []
    for gbit in (10, 100):
        cells = []
        for p in (2, 4, 8, 16, 32, 64):
            ring = 2 * (p - 1) / p * nbytes / (gbit / 8 * 1e9) + 2 * (p - 1) * LATENCY_S
            step = compute / p + two["copy_per_step_s"] + ring
            cells.append(f"p={p}: {step * 1e3:.1f} ms ({compute / (p * step):.0%})")
        lines.append(f"{gbit} Gbit/s: " + ", ".join(cells))
    return (f"model of a step (batch {batch}, {nbytes / 1e6:.1f} MB of gradients, compute {compute * 1e3:.0f} ms "
            f"on one rank, copies {two['copy_per_step_s'] * 1e3:.1f} ms):\n  " + "\n  ".join(lines))


def launch(name: str, ranks: int, independent: bool = False) -> dict:
    mpiexec = Path(sys.executable).with_name("mpiexec")
    env = {**os.environ, "POCL_MAX_PTHREAD_COUNT": "1", "CLNET_LOG_LEVEL": "WARNING"}
    extra = ["--independent"] if independent else []
    result = subprocess.run([str(mpiexec), "-n", str(ranks), sys.executable, __file__, "--worker", name, *extra],
                            capture_output=True, text=True, env=env, timeout=600, check=True)
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--independent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=sorted(NETWORKS), nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.independent)
        return
    rows, results = [], {}
    for name in args.only or list(NETWORKS):
        runs = {1: [], 2: [], "apart": []}
        for _ in range(args.rounds if name != "large" else 1):
            for ranks in (1, 2):
                runs[ranks].append(launch(name, ranks))
            runs["apart"].append(launch(name, 2, independent=True))
        one, two, apart = ({k: statistics.median(r[k] for r in runs[n]) for k in runs[n][0]} for n in (1, 2, "apart"))
        results[name] = {"1 rank": one, "2 ranks": two, "2 independent processes": apart}
        inputs, layers, _, batch, _ = NETWORKS[name]
        shape = "-".join([str(inputs)] + [str(o) for o, _ in layers])
        rows.append([f"{shape}, batch {batch}", one["samples_per_s"], two["samples_per_s"],
                     two["samples_per_s"] / one["samples_per_s"], apart["samples_per_s"] / one["samples_per_s"],
                     one["step_s"] * 1e3, two["step_s"] * 1e3,
                     two["allreduce_per_step_s"] * 1e3, two["copy_per_step_s"] * 1e3, one["parameters"]])
    print("samples/s, float32, SGD; PoCL with one thread per rank; medians of rounds run in turns\n")
    print("ceiling: two independent 1-thread processes at once, their samples/s over one alone\n")
    print(common.table(["network, global batch", "1 rank", "2 ranks", "speed-up", "ceiling", "step ms (1)",
                        "step ms (2)", "Allreduce ms (2)", "copies ms (2)", "parameters"], rows))
    for name, result in results.items():
        print(f"\n{name}: " + model(name, result["1 rank"], result["2 ranks"]))
    path = common.write_json("distributed", {"results": results, "machine": common.machine()})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
