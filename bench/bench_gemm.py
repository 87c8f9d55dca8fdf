"""GEMM speed: GFLOP/s of clnet untuned and tuned, CLBlast with its defaults, and numpy.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/bench_gemm.py [--device SPEC]

Shapes: square n = 256, 512, 1024, 2048 (A @ B), and the products of the training benchmarks
(bench_train.py): x @ W.T, dZ.T @ x and dZ @ W of the 784 -> 512 layer at batch 256, and the
forward product of the 10000 -> 5000 layer at batch 1000. float32. "untuned" is what a Context
does without a tuning file (clnet's tiled kernel on CPUs, CLBlast on GPUs); "tuned" applies the
device's saved tuning (`clnet tune`; a quick tune runs first when there is none). Ratios are
clnet / numpy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyopencl.array as cla

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet import tuning  # noqa: E402
from clnet.ops import blas  # noqa: E402
from clnet.tuning.store import TUNING_ENV  # noqa: E402

ROUNDS = 3
SHAPES = [
    ("n = 256", 256, 256, 256, False, False),
    ("n = 512", 512, 512, 512, False, False),
    ("n = 1024", 1024, 1024, 1024, False, False),
    ("n = 2048", 2048, 2048, 2048, False, False),
    ("784-512 fwd x @ W.T", 256, 512, 784, False, True),
    ("784-512 dW = dZ.T @ x", 512, 784, 256, True, False),
    ("784-512 dx = dZ @ W", 256, 784, 512, False, False),
    ("10000-5000 fwd, batch 1000", 1000, 5000, 10000, False, True),
]


def host_operands(m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, size=(k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, size=(n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b


class Runner:
    """One shape's operands on the host and in each context, and one timed product of each."""

    def __init__(self, shape, contexts):
        _, m, n, k, self.trans_a, self.trans_b = shape
        self.flop = 2.0 * m * n * k
        a, b = host_operands(m, n, k, self.trans_a, self.trans_b)
        self.op_a, self.op_b = (a.T if self.trans_a else a), (b.T if self.trans_b else b)
        self.device = {id(ctx): (cla.to_device(ctx.queue, a), cla.to_device(ctx.queue, b),
                                 cla.empty(ctx.queue, (m, n), np.float32)) for ctx in contexts}

    def device_gflops(self, ctx, backend=None, repeats=1) -> float:
        a, b, c = self.device[id(ctx)]
        seconds = common.median_seconds(lambda: (blas.gemm(ctx, a, b, c, trans_a=self.trans_a, trans_b=self.trans_b,
                                                           backend=backend), ctx.finish()), repeats)
        return self.flop / seconds / 1e9

    def numpy_gflops(self, repeats=1) -> float:
        return self.flop / common.median_seconds(lambda: self.op_a @ self.op_b, repeats) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ[TUNING_ENV] = "off"
    untuned = clnet.Context(args.device)
    del os.environ[TUNING_ENV]
    defaults = blas.settings(untuned, "float32")
    runners = {shape[0]: Runner(shape, [untuned]) for shape in SHAPES}
    # CLBlast's defaults first: a tuned CLBlast override would last the rest of the process
    clblast = {name: runner.device_gflops(untuned, "clblast", 1 if runner.flop > 2**33 else 3)
               for name, runner in runners.items()}
    tuned = clnet.Context(args.device)
    if not blas.settings(tuned, "float32").tuned:
        print("no saved tuning for this device: running `clnet tune --quick` first", file=sys.stderr)
        started = time.perf_counter()
        clnet.tune(tuned, "float32", quick=True)
        print(f"quick tune took {time.perf_counter() - started:.0f} s", file=sys.stderr)
    entry = tuning.load()[tuned.info.key]["float32"]
    rows = {}
    for shape in SHAPES:
        # blocks of runs in turns, so that a burst of load hits all three alike
        runner = Runner(shape, [untuned, tuned])
        runs = {"clnet untuned": [], "clnet tuned": [], "numpy": []}
        for _ in range(ROUNDS):
            runs["clnet untuned"].append(runner.device_gflops(untuned, repeats=args.repeats))
            runs["clnet tuned"].append(runner.device_gflops(tuned, repeats=args.repeats))
            runs["numpy"].append(runner.numpy_gflops(repeats=args.repeats))
        rows[shape[0]] = {"CLBlast defaults": clblast[shape[0]], **{k: float(np.median(v)) for k, v in runs.items()}}
    info = common.machine(tuned)
    untuned.close()
    tuned.close()

    print(f"GFLOP/s (median of {ROUNDS} rounds of medians of {args.repeats}), float32, on {info['device']['name']} "
          f"({info['device']['platform']}); numpy on {info['cores']} cores of {info['cpu']}.\n"
          f"untuned = {defaults.small}/{defaults.large} (small/large products), tiles {defaults.tiles.as_dict()}; "
          f"tuned = {entry['backend']['small']}/{entry['backend']['large']}, tiles {entry['clnet']}\n")
    columns = ["CLBlast defaults", "clnet untuned", "clnet tuned", "numpy"]
    table = [[name] + [row[c] for c in columns] + [row["clnet untuned"] / row["numpy"],
                                                   row["clnet tuned"] / row["numpy"]] for name, row in rows.items()]
    print(common.table(["shape (m, n, k)"] + columns + ["untuned/numpy", "tuned/numpy"], table))
    path = common.write_json("gemm", {"gflops": rows, "tuning": {k: entry[k] for k in ("backend", "clnet", "clblast")},
                                      "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
