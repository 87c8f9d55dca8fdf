"""What a lent GPU should run first (issue 25): every clnet kernel's limits on it, its GEMMs
against the fp32 peak (and CLBlast where pyclblast is there), and the portable tests with and
without pyclblast.

    python3 bench/gpu_first_run.py [--device gpu] [--out DIR] [--no-tests] [--sizes 1024 2048 4096]

On the GPU machine of ../shared/gpu (after `.whl/on-gpu` has installed the wheels and set
OCL_ICD_VENDORS): `PYTHONPATH=/tmp/site:$PWD python3 bench/gpu_first_run.py --out $OUT`.
Prints, and writes to DIR/gpu-first-run.txt:
  - the device, and for each kernel as clnet builds it: CL_KERNEL_WORK_GROUP_SIZE, the
    preferred work-group multiple (warp, wavefront), private and local memory per work-item;
  - float32 GFLOP/s of square products (1024, 2048, 4096) through each of clnet's GPU tiles that
    fits, and CLBlast, as a share of the fp32 peak measured by a multiply-add kernel in the run;
  - the portable suite (tests/test_portable.py) as installed, then with pyclblast hidden.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import clnet  # noqa: E402
from clnet.ops import blas, local_gemm  # noqa: E402

KERNELS = [  # (template, kernel, params) as clnet builds them for float32
    ("gemm_local.cl", "gemm_local", dict(tm=64, tn=64, tk=16, wm=4, wn=4, trans_a=False, trans_b=True,
                                         epilogue="relu", keep_z=True)),
    ("gemm_local.cl", "gemm_local", dict(tm=64, tn=64, tk=16, wm=8, wn=8, trans_a=False, trans_b=False,
                                         epilogue=None, keep_z=False)),
    ("gemm.cl", "gemm_tile", dict(rows=6, width=8, a_layout="rows", packed_b=True, epilogue=None, keep_z=False,
                                  c_transposed=False, split_k=False)),
    ("bias.cl", "column_sums", {}), ("bias.cl", "add_bias", {}), ("activations.cl", "forward_tanh", {}),
    ("costs.cl", "softmax_cross_entropy_sum_delta", {}), ("random.cl", "fill_normal", dict(lanes=1, wide_mulhi=False)),
    ("updates.cl", "adam", dict(keep=False)),
]


def peak_gflops(ctx) -> float:
    """fp32 GFLOP/s of 8 independent multiply-add chains per work-item, 2048 work-items per CU."""
    chains = [f"a{i}" for i in range(8)]
    source = "\n".join(["__kernel void peak(__global float *out, const int iterations) {",
                        "    const float m = 0.9999999f, c = 1e-7f;",
                        "    float " + ", ".join(f"{n} = get_global_id(0) + {i}" for i, n in enumerate(chains)) + ";",
                        "    for (int i = 0; i < iterations; i++) {",
                        *[f"        {n} = {n} * m + c;" for n in chains], "    }",
                        "    out[get_global_id(0)] = " + " + ".join(chains) + ";", "}"])
    kernel = cl.Program(ctx.context, source).build().peak
    items, iterations = 2048 * ctx.info.compute_units, 4096
    out = cl.Buffer(ctx.context, cl.mem_flags.WRITE_ONLY, 4 * items)
    best = float("inf")
    for _ in range(4):
        start = time.perf_counter()
        kernel(ctx.queue, (items,), (256,), out, np.int32(iterations))
        ctx.finish()
        best = min(best, time.perf_counter() - start)
    return items * iterations * len(chains) * 2 / best / 1e9


def gemm_gflops(ctx, n: int, backend: str) -> float:
    rng = np.random.default_rng(n)
    a, b = (cla.to_device(ctx.queue, rng.normal(size=(n, n)).astype(np.float32)) for _ in range(2))
    c = cla.empty(ctx.queue, (n, n), np.float32)
    blas.gemm(ctx, a, b, c, backend=backend)  # builds
    ctx.finish()
    check = rng.integers(0, n, 8)
    expected = a.get()[check] @ b.get()
    if not np.allclose(c.get()[check], expected, rtol=1e-3, atol=1e-3 * np.sqrt(n)):
        return float("nan")
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        blas.gemm(ctx, a, b, c, backend=backend)
        ctx.finish()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="gpu")
    parser.add_argument("--out", default=".")
    parser.add_argument("--no-tests", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    args = parser.parse_args()
    lines = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    with clnet.Context(args.device) as ctx:
        device = ctx.device
        say(f"{ctx.info.name} ({ctx.info.platform}, driver {ctx.info.driver_version}): {ctx.info.compute_units} CUs, "
            f"work-group limit {ctx.info.max_work_group_size}, local memory {ctx.info.local_mem_bytes // 1024} KiB")
        say("\n| kernel | params | work-group limit | preferred multiple | private bytes | local bytes |")
        say("|---|---|---|---|---|---|")
        info = cl.kernel_work_group_info
        for template, name, params in KERNELS:
            try:
                kernel = ctx.kernel(template, name, dtype="float32", **params).cl_kernel
                figures = [kernel.get_work_group_info(what, device) for what in (
                    info.WORK_GROUP_SIZE, info.PREFERRED_WORK_GROUP_SIZE_MULTIPLE, info.PRIVATE_MEM_SIZE,
                    info.LOCAL_MEM_SIZE)]
            except Exception as exc:  # a kernel that fails to build is a finding too
                figures = [f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"] + [""] * 3
            say(f"| {name} | {params} | " + " | ".join(str(f) for f in figures) + " |")
        peak = peak_gflops(ctx)
        say(f"\nfp32 peak (multiply-add chains): {peak:.0f} GFLOP/s")
        say("\n| n | backend (tiles) | GFLOP/s | share of peak |")
        say("|---|---|---|---|")
        chosen = blas.settings(ctx, "float32")
        for n in args.sizes:
            runs = [("clnet_gpu", tiles) for tiles in local_gemm.CANDIDATES if local_gemm.fits(ctx, np.float32, tiles)]
            runs += [("clblast", None)] if blas.HAVE_CLBLAST else []
            for backend, tiles in runs:
                chosen.local = tiles or chosen.local
                gflops = gemm_gflops(ctx, n, backend)
                label = backend + (f" {tiles.as_dict()}" if tiles else "")
                say(f"| {n} | {label} | {gflops:.0f} | {gflops / peak:.0%} |")
    if not args.no_tests:
        for hidden in ("0", "1"):
            env = {**os.environ, "CLNET_TEST_DEVICE": args.device, "CLNET_TEST_WITHOUT_CLBLAST": hidden}
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
                                     "tests/test_portable.py"], capture_output=True, text=True, env=env)
            tail = (result.stdout + result.stderr).strip().splitlines()[-1:]
            say(f"\nportable suite{' with pyclblast hidden' if hidden == '1' else ''}: exit {result.returncode}; "
                f"{tail[0] if tail else ''}")
    Path(args.out, "gpu-first-run.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
