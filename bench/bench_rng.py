"""Random numbers: ns per number filling 55,010,000 float32 (the seed's large network).

    .venv/bin/python bench/bench_rng.py [--device SPEC] [--n N] [--repeats R]

Compares, in the same run: clnet uniform and normal; numpy's default_rng().random and
standard_normal (float32); pyopencl.clrandom.PhiloxGenerator; and a plain OpenCL store kernel
(clnet.ops.memory.fill), which is the memory-bandwidth limit. Ratios are numpy time / clnet time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyopencl.array as cla
import pyopencl.clrandom as clrandom

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.ops import memory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--n", type=int, default=55_010_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.n

    with clnet.Context(args.device) as ctx:
        queue = ctx.queue
        a = cla.empty(queue, n, np.float32)
        g = clnet.Philox(ctx, seed=1)
        pyopencl_gen = clrandom.PhiloxGenerator(ctx.context, seed=1)

        def device(fill):
            return lambda: (fill(), queue.finish())

        numpy_gen = np.random.default_rng(1)
        cases = {
            "store kernel (bandwidth limit)": device(lambda: memory.fill(ctx, a, 0.5)),
            "clnet uniform": device(lambda: g.uniform(a)),
            "clnet normal": device(lambda: g.normal(a)),
            "pyopencl PhiloxGenerator uniform": device(lambda: pyopencl_gen.fill_uniform(a)),
            "pyopencl PhiloxGenerator normal": device(lambda: pyopencl_gen.fill_normal(a)),
            "numpy random(float32)": lambda: numpy_gen.random(n, dtype=np.float32),
            "numpy standard_normal(float32)": lambda: numpy_gen.standard_normal(n, dtype=np.float32),
        }
        ns = {name: common.median_seconds(run, args.repeats) / n * 1e9 for name, run in cases.items()}
        info = common.machine(ctx)

    ratios = {
        "uniform: numpy / clnet": ns["numpy random(float32)"] / ns["clnet uniform"],
        "normal: numpy / clnet": ns["numpy standard_normal(float32)"] / ns["clnet normal"],
        "uniform: pyopencl / clnet": ns["pyopencl PhiloxGenerator uniform"] / ns["clnet uniform"],
        "normal: pyopencl / clnet": ns["pyopencl PhiloxGenerator normal"] / ns["clnet normal"],
        "uniform: clnet / store": ns["clnet uniform"] / ns["store kernel (bandwidth limit)"],
    }
    print(f"{n:,} float32 on {info['device']['name']} ({info['device']['platform']}), "
          f"median of {args.repeats}; numpy on {info['cores']} cores of {info['cpu']}\n")
    print(common.table(["generator", "ns per number"], [[k, v] for k, v in ns.items()]))
    print()
    print(common.table(["ratio", "x"], [[k, v] for k, v in ratios.items()]))
    path = common.write_json("rng", {"n": n, "ns_per_number": ns, "ratios": ratios, "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
