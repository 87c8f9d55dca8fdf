"""Training speed: the four reference networks of issue 13, clnet beside PyTorch (CPU) in the
same run, and the seed network's GFLOP/s as a share of the cores' measured multiply-add peak.

    .venv/bin/python bench/bench_train.py [--device SPEC] [--repeats R] [--only NAME ...]

Networks (float32; one epoch = the batches listed; clnet.sgd for one batch, fit otherwise):
  mlp     784 -> 512 tanh -> 10 sigmoid, quadratic, SGD, one batch of 256
  seed    10000 -> 5000 tanh -> 1000 sigmoid -> 10 sigmoid, quadratic, SGD, one batch of 1000
  digits  64 -> 128 relu -> 10 softmax, cross-entropy, Adam, 45 batches of 32 (1440 samples)
  mnist   784 -> 256 relu -> 128 relu -> 10 softmax, cross-entropy, Adam, 32 batches of 64
PyTorch runs with torch.set_num_threads(cores) when installed (`pip install torch==2.13.0`).
The peak is a kernel of independent vector multiply-adds on the same device (`peak_gflops`),
measured before and after the networks; the higher figure counts.
Each library's figure is the median of `rounds` medians, the two libraries alternating.
Ratios: clnet's time / PyTorch's (issue 13's goal: at most 0.8).

The matrix products of a step are also timed alone, in both libraries on the same shapes and
layouts (clnet's blas.gemm as the training network lays them out, torch.mm): "torch GEMM share"
is the part of PyTorch's step spent in its products. Where it is above 0.8, a step at 0.8x
PyTorch's time needs clnet's products to run faster than PyTorch's own (oneDNN/MKL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.app.bench.references import TRAINING_NETWORKS, torch_training, training_data  # noqa: E402
from clnet.app.bench.suite import clnet_epoch  # noqa: E402
from clnet.ops import blas, dense  # noqa: E402

CHAINS = 12  # independent accumulators: enough to keep two FMA units busy through their latency


def peak_gflops(ctx, repeats: int) -> float:
    """fp32 GFLOP/s of CHAINS independent multiply-add chains on the device's native vectors,
    over enough work-items for every compute unit (the best of `repeats` runs)."""
    width = max(ctx.info.native_float_width, 2)
    vec = f"float{width}"
    names = [f"a{i}" for i in range(CHAINS)]
    source = "\n".join([
        "__kernel void fma_peak(__global float *out, const int iterations) {",
        f"    const {vec} m = ({vec})(0.9999999f), c = ({vec})(1e-7f);",
        f"    {vec} " + ", ".join(f"{n} = ({vec})(get_global_id(0) + {i})" for i, n in enumerate(names)) + ";",
        "    for (int i = 0; i < iterations; i++) {",
        *[f"        {n} = {n} * m + c;" for n in names],
        "    }",
        "    out[get_global_id(0)] = " + " + ".join(f"{n}.s0" for n in names) + ";",
        "}"])
    kernel = cl.Program(ctx.context, source).build().fma_peak
    items, iterations = 16 * ctx.info.compute_units, 100_000
    out = cl.Buffer(ctx.context, cl.mem_flags.WRITE_ONLY, 4 * items)
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        kernel(ctx.queue, (items,), (1,), out, np.int32(iterations))
        ctx.finish()
        best = min(best, time.perf_counter() - start)
    return items * iterations * CHAINS * width * 2 / best / 1e9


def flops_per_epoch(key: str) -> int:
    """Multiply-adds x 2 of the products of one epoch: forward, dW, and dX past the first layer."""
    inputs, layers, _, _, _, samples = TRAINING_NETWORKS[key]
    widths = [inputs] + [o for o, _ in layers]
    per_row = [a * b for a, b in zip(widths, widths[1:])]
    return 2 * samples * (2 * sum(per_row) + sum(per_row[1:]))


def step_products(key: str) -> list[tuple[int, int, int, bool, bool]]:
    """(m, n, k, trans_a, trans_b) of one step's products as clnet's training network lays them
    out: the forward product (as out.T = W @ x.T where ops.dense chooses that), dW = delta.T @ a,
    and dX = delta @ W past the first layer."""
    inputs, layers, _, _, batch, _ = TRAINING_NETWORKS[key]
    products, width = [], inputs
    for index, (outputs, activation) in enumerate(layers):
        if dense.transposes(batch, outputs, activation):
            products.append((outputs, batch, width, False, True))
        else:
            products.append((batch, outputs, width, False, True))
        products.append((outputs, width, batch, True, False))
        if index:
            products.append((batch, width, outputs, False, False))
        width = outputs
    return products


def products_step(key: str, multiply, empty):
    """One step's products alone: multiply(a, b, c, trans_a, trans_b) on arrays made by
    empty(shape)."""
    operands = [(empty((k, m) if ta else (m, k)), empty((n, k) if tb else (k, n)), empty((m, n)), ta, tb)
                for m, n, k, ta, tb in step_products(key)]

    def step():
        for a, b, c, ta, tb in operands:
            multiply(a, b, c, ta, tb)

    return step


def epoch_of(key: str, step):
    """An epoch of `key`: `step` once per batch."""
    _, _, _, _, batch, samples = TRAINING_NETWORKS[key]
    steps = -(-samples // batch)

    def epoch():
        for _ in range(steps):
            step()

    return epoch


def clnet_products(ctx, key: str):
    """clnet's products of an epoch, recorded once and replayed as a training network's are."""
    rng = np.random.default_rng(0)

    def empty(shape):
        return cla.to_device(ctx.queue, rng.random(shape, dtype=np.float32))

    step = products_step(key, lambda a, b, c, ta, tb: blas.gemm(ctx, a, b, c, trans_a=ta, trans_b=tb), empty)
    with ctx.record() as plan:
        step()
    epoch = epoch_of(key, (lambda: ctx.replay(plan)) if plan.complete else step)  # CLBlast's GEMMs run live
    return lambda: (epoch(), ctx.finish())


def torch_products(key: str):
    import torch

    def multiply(a, b, c, ta, tb):
        torch.mm(a.T if ta else a, b.T if tb else b, out=c)

    return epoch_of(key, products_step(key, multiply, lambda shape: torch.rand(shape)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=7, help="runs per median")
    parser.add_argument("--rounds", type=int, default=3, help="medians per library, alternating")
    parser.add_argument("--only", choices=sorted(TRAINING_NETWORKS), nargs="+")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(os.cpu_count())
    except ImportError:
        torch = None
    results = {}
    with clnet.Context(args.device) as ctx:
        peak = peak_gflops(ctx, args.repeats)
        for key in args.only or TRAINING_NETWORKS:
            repeats = args.repeats if key != "seed" else max(3, args.repeats // 2)
            run, _ = clnet_epoch(ctx, key)
            reference = torch_training(key, *training_data(key)) if torch else None
            clnet_gemm = clnet_products(ctx, key)
            torch_gemm = torch_products(key) if torch else None
            clnet_s, torch_s, clnet_gemm_s, torch_gemm_s = [], [], [], []
            for _ in range(args.rounds):  # alternate, so that both see the machine's slow and fast spells
                clnet_s.append(common.median_seconds(run, repeats))
                clnet_gemm_s.append(common.median_seconds(clnet_gemm, repeats))
                if reference:
                    torch_s.append(common.median_seconds(reference, repeats))
                    torch_gemm_s.append(common.median_seconds(torch_gemm, repeats))
            median = statistics.median
            results[key] = {"clnet": median(clnet_s), "torch": median(torch_s) if torch_s else None,
                            "clnet_gemm": median(clnet_gemm_s), "torch_gemm": median(torch_gemm_s) if torch_s else None,
                            "gflops": flops_per_epoch(key) / median(clnet_s) / 1e9,
                            "clnet_rounds": clnet_s, "torch_rounds": torch_s,
                            "clnet_gemm_rounds": clnet_gemm_s, "torch_gemm_rounds": torch_gemm_s}
        peak = max(peak, peak_gflops(ctx, args.repeats))  # again at the end: the best of both spells
        info = common.machine(ctx)
    info["torch_threads"] = torch.get_num_threads() if torch else None

    print(f"ms per step, float32; clnet on {info['device']['name']} ({info['device']['platform']}); "
          f"PyTorch on {info['torch_threads']} threads of {info['cpu']}; "
          f"measured fp32 multiply-add peak {peak:.0f} GFLOP/s\n")
    rows = []
    for key, row in results.items():
        inputs, layers, cost, optimizer, batch, samples = TRAINING_NETWORKS[key]
        steps = -(-samples // batch)
        shape = " -> ".join([str(inputs)] + [f"{o} {a}" for o, a in layers]) + f", {optimizer}, batch {batch}"
        torch_ms = row["torch"] * 1e3 / steps if row["torch"] else None
        rows.append([key, shape, row["clnet"] * 1e3 / steps, torch_ms or "-",
                     row["clnet"] / row["torch"] if torch_ms else "-", row["gflops"], row["gflops"] / peak,
                     row["torch_gemm"] / row["torch"] if torch_ms else "-",
                     row["clnet_gemm"] / row["torch_gemm"] if torch_ms else "-"])
    print(common.table(["name", "network", "clnet ms", "torch ms", "clnet/torch", "GFLOP/s", "of peak",
                        "torch GEMM share", "GEMMs clnet/torch"], rows))
    path = common.write_json("train", {"seconds_per_epoch": results, "peak_gflops": peak, "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
