"""Products cut along k (clnet's GEMM, ops/tiled_gemm.k_parts) against the same products uncut and
numpy's, on the filter-gradient shapes of bench_conv's networks, where k is long and the output small.

    .venv/bin/python bench/bench_split_k.py [--rounds R] [--device D]

Each shape: C (m, n) = A (m, k) @ B.T (B (n, k)), float32, the way conv.weight_gradients calls it
(cols @ dz.T). Times are medians of 11 runs, each waited on, the variants alternated over `rounds`
rounds and the best round kept; the ratio is uncut / cut (above 1: cutting is faster).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyopencl.array as cla

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.ops import blas, tiled_gemm  # noqa: E402

SHAPES = {  # name: (m, n, k)
    "LeNet conv 1 -> 6, 5x5": (25, 6, 64 * 28 * 28),
    "LeNet conv 6 -> 16, 5x5": (150, 16, 64 * 10 * 10),
    "CIFAR conv 3 -> 32, 3x3": (27, 32, 64 * 32 * 32),
    "CIFAR conv 32 -> 64, 3x3": (288, 64, 64 * 16 * 16),
    "a 54 x 16 output, k 16384": (54, 16, 16384),
    "64 x 64, k 4096": (64, 64, 4096),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    ctx = clnet.Context(args.device)
    rule = tiled_gemm.k_parts
    settings = blas.settings(ctx, np.float32)
    rows = []
    for name, (m, n, k) in SHAPES.items():
        rng = np.random.default_rng(0)
        a_host, b_host = rng.standard_normal((m, k), np.float32), rng.standard_normal((n, k), np.float32)
        a, b = cla.to_device(ctx.queue, a_host), cla.to_device(ctx.queue, b_host)
        c = cla.empty(ctx.queue, (m, n), np.float32)
        parts = rule(m, n, k, settings.tiles, np.float32, ctx.info.compute_units)
        times: dict[str, list[float]] = {"uncut": [], "cut": [], "numpy": []}

        def product(a=a, b=b, c=c):
            blas.gemm(ctx, a, b, c, trans_b=True, backend="clnet")
            ctx.finish()

        for _ in range(args.rounds):
            for variant in ("uncut", "cut"):
                tiled_gemm.k_parts = (lambda *_: 1) if variant == "uncut" else rule
                times[variant].append(common.median_seconds(product, 11))
            tiled_gemm.k_parts = rule
            times["numpy"].append(common.median_seconds(lambda a=a_host, b=b_host: a @ b.T, 11))
        best = {v: min(t) * 1e3 for v, t in times.items()}
        rows.append([name, f"{m} x {n} x {k}", parts, best["uncut"], best["cut"], best["uncut"] / best["cut"],
                     best["numpy"]])
    print(f"{ctx.info.name}, {ctx.info.compute_units} compute units; ms")
    print(common.table(["product", "m x n x k", "parts", "uncut", "cut", "uncut / cut", "numpy"], rows))
    common.write_json("split_k", {"machine": common.machine(ctx), "rows": rows})


if __name__ == "__main__":
    main()
