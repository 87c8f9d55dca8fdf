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
from clnet import blas, tuning  # noqa: E402

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


def gflops_device(ctx, shape, backend, repeats) -> float:
    _, m, n, k, trans_a, trans_b = shape
    a, b = (cla.to_device(ctx.queue, x) for x in host_operands(m, n, k, trans_a, trans_b))
    c = cla.empty(ctx.queue, (m, n), np.float32)
    if backend == "clblast" and m * n * k > 2**32:
        repeats = 1  # CLBlast's defaults take many seconds here
    seconds = common.median_seconds(
        lambda: (blas.gemm(ctx, a, b, c, trans_a=trans_a, trans_b=trans_b, backend=backend), ctx.finish()), repeats)
    return 2.0 * m * n * k / seconds / 1e9


def gflops_numpy(shape, repeats) -> float:
    _, m, n, k, trans_a, trans_b = shape
    a, b = host_operands(m, n, k, trans_a, trans_b)
    op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)
    return 2.0 * m * n * k / common.median_seconds(lambda: op_a @ op_b, repeats) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ[tuning.TUNING_ENV] = "off"
    rows = {name: {} for name, *_ in SHAPES}
    with clnet.Context(args.device) as ctx:  # untuned first: CLBlast overrides last a whole process
        untuned = blas.settings(ctx, "float32")
        for shape in SHAPES:
            rows[shape[0]]["CLBlast defaults"] = gflops_device(ctx, shape, "clblast", args.repeats)
            rows[shape[0]]["clnet untuned"] = gflops_device(ctx, shape, None, args.repeats)
        untuned_backends = f"{untuned.small}/{untuned.large}"
    del os.environ[tuning.TUNING_ENV]
    with clnet.Context(args.device) as ctx:
        if not blas.settings(ctx, "float32").tuned:
            print("no saved tuning for this device: running `clnet tune --quick` first", file=sys.stderr)
            started = time.perf_counter()
            clnet.tune(ctx, "float32", quick=True)
            print(f"quick tune took {time.perf_counter() - started:.0f} s", file=sys.stderr)
        entry = tuning.load()[tuning.device_key(ctx.info)]["float32"]
        for shape in SHAPES:
            rows[shape[0]]["clnet tuned"] = gflops_device(ctx, shape, None, args.repeats)
        info = common.machine(ctx)
    for shape in SHAPES:
        rows[shape[0]]["numpy"] = gflops_numpy(shape, args.repeats)

    print(f"GFLOP/s, float32, on {info['device']['name']} ({info['device']['platform']}); numpy on "
          f"{info['cores']} cores of {info['cpu']}. untuned = {untuned_backends} (small/large products); "
          f"tuned = {entry['backend']['small']}/{entry['backend']['large']}, tiles {entry['clnet']}\n")
    columns = ["CLBlast defaults", "clnet untuned", "clnet tuned", "numpy"]
    table = [[name] + [row[c] for c in columns] + [row["clnet tuned"] / row["numpy"]] for name, row in rows.items()]
    print(common.table(["shape (m, n, k)"] + columns + ["tuned/numpy"], table))
    path = common.write_json("gemm", {"gflops": rows, "tuning": {k: entry[k] for k in ("backend", "clnet", "clblast")},
                                      "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
