"""What fit's options of issue 35 cost: an epoch of the digits network (64-128-10, batch 32, 1440
samples) and of LeNet-5 (28x28, batch 64, 2048 samples) plain, with sample weights, with
clipping by global norm, with a callback that has batch hooks (its cost not read), and from an
iterable of the same batches; the variants alternate, each the median of the rounds.

    .venv/bin/python bench/bench_fit_options.py [--device SPEC] [--rounds R]

ratio = variant / plain (1: no cost).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402


class BatchHooks(clnet.Callback):
    def on_batch_end(self, batch, logs):
        self.last = logs["batch"]


def networks(ctx):
    digits = (64, [clnet.FullyConnected(128, "relu"), clnet.FullyConnected(10, "softmax")], 32, 1440)
    lenet = ((1, 28, 28), [clnet.Conv2d(6, 5, padding=2, activation="relu"), clnet.MaxPool2d(2),
                           clnet.Conv2d(16, 5, activation="relu"), clnet.MaxPool2d(2), clnet.Flatten(),
                           clnet.FullyConnected(120, "relu"), clnet.FullyConnected(84, "relu"),
                           clnet.FullyConnected(10, "softmax")], 64, 2048)
    return {"digits": digits, "lenet5": lenet}


def fits(net, x, labels, weights, batch: int) -> dict:
    """Each variant's fit of one epoch, as a function of nothing."""
    batches = [(x[i:i + batch], labels[i:i + batch]) for i in range(0, len(x), batch)]
    plain = {"epochs": 1, "batch_size": batch, "progress": False, "shuffle": False}
    return {
        "plain": lambda: net.fit(x, labels, optimizer=clnet.SGD(0.01), **plain),
        "sample_weight": lambda: net.fit(x, labels, optimizer=clnet.SGD(0.01), sample_weight=weights, **plain),
        "clip_norm": lambda: net.fit(x, labels, optimizer=clnet.SGD(0.01, clip_norm=1.0), **plain),
        "batch callback": lambda: net.fit(x, labels, optimizer=clnet.SGD(0.01), callbacks=[BatchHooks()], **plain),
        "iterable": lambda: net.fit(batches, cost="cross_entropy", epochs=1, optimizer=clnet.SGD(0.01),
                                    progress=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="pocl")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows, results = [], {}
    with clnet.Context(args.device) as ctx:
        for name, (shape, layers, batch, samples) in networks(ctx).items():
            x = rng.normal(size=(samples, *np.atleast_1d(shape))).astype(np.float32)
            labels = rng.integers(0, 10, samples)
            weights = rng.uniform(0.5, 2, samples)
            net = clnet.InferenceNetwork(ctx, shape, layers, seed=1)
            variants = fits(net, x, labels, weights, batch)
            times = {key: [] for key in variants}
            for run in variants.values():  # built, and the training networks made
                run()
            for _ in range(args.rounds):
                for key, run in variants.items():
                    started = time.perf_counter()
                    run()
                    times[key].append(time.perf_counter() - started)
            median = {key: statistics.median(found) for key, found in times.items()}
            results[name] = median
            rows += [[name, key, median[key] * 1e3, median[key] / median["plain"]] for key in variants]
        record = {"machine": common.machine(ctx), "rounds": args.rounds, "epoch_seconds": results}
    print(common.table(["network", "fit of one epoch", "ms", "ratio"], rows))
    print(common.write_json("fit_options", record))


if __name__ == "__main__":
    main()
