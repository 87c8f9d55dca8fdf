"""A convolution's bias gradient as the working tree computes it against conv.cl's row_sums of an
earlier commit, built side by side in one process (issue 34); batch norm's kernels, the same
templates in both (today's: their signatures changed since), show this machine's noise. The bias
gradient then: row_sums of delta laid out as (out, samples * pixels), launched as conv.row_sums
launched it; now: conv.channel_sums of delta as it is (samples, out, pixels).

    .venv/bin/python bench/bench_norm_kernels.py [--rev 0ddf461] [--rounds R] [--device D]

The earlier commit's row_sums kernel (git show REV:kernels/conv.cl) is added to a copy of today's
kernels/, given to a second Context (Context(spec, Templates([...]))). float32, (64, 32, 1024): a CIFAR layer's
batch-norm input. ms, the best of `rounds` alternating medians of 11; ratio = then / now.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.ops import conv, norm  # noqa: E402
from clnet.ops.arrays import reduction_items  # noqa: E402
from clnet.runtime.programs import Templates  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (64, 32, 1024)


def templates_at(rev: str, folder: Path) -> Templates:
    """Today's kernels/ with conv.cl's row_sums of rev added."""
    shutil.copytree(ROOT / "kernels", folder, dirs_exist_ok=True)
    old = {"conv.cl": subprocess.run(["git", "show", f"{rev}:kernels/conv.cl"], cwd=ROOT, check=True,
                                     capture_output=True, text=True).stdout}
    row_sums = re.compile(r'\$\{kernel\("row_sums".*?\n\}\n', re.S)
    today = (folder / "conv.cl").read_text()
    (folder / "conv.cl").write_text(today + "\n" + row_sums.search(old["conv.cl"]).group(0))
    return Templates([folder])


def row_sums(ctx, x: cla.Array, out: cla.Array) -> None:
    """conv.row_sums as it was: one work-group per row of x (rows, cols)."""
    kernel = ctx.kernel("conv.cl", "row_sums", dtype=np.dtype(np.float32))
    (items,) = kernel.work_group(ctx.device, (min(reduction_items(ctx), 64),))
    kernel(ctx.queue, (x.shape[0] * items,), (items,), x=x, out=out, cols=x.shape[1], accumulate=0,
           partial=cl.LocalMemory(items * 4))


def runs(ctx, then: bool) -> dict:
    n, c, hw = SHAPE
    rng = np.random.default_rng(0)
    q = ctx.queue
    x, dy = (cla.to_device(q, rng.standard_normal(SHAPE, np.float32)) for _ in range(2))
    y, dx = cla.empty_like(x), cla.empty_like(x)
    mean, var, s1, s2, bias_grad = (cla.empty(q, c, np.float32) for _ in range(5))
    scale = cla.to_device(q, np.linspace(0.5, 2, c).astype(np.float32))
    shift = cla.to_device(q, np.linspace(-1, 1, c).astype(np.float32))
    dz = cla.to_device(q, dy.get().transpose(1, 0, 2).reshape(c, n * hw))  # the layout row_sums read
    found = {
        "moments": lambda: norm.moments(ctx, x, mean, var, SHAPE),
        "normalize": lambda: norm.normalize(ctx, x, mean, var, scale, shift, 1e-5, y, hw, c, "row", "row"),
        "sums": lambda: norm.sums(ctx, dy, x, mean, var, None, 1e-5, s1, s2, SHAPE),
        "normalize_backward": lambda: norm.normalize_backward(ctx, dy, x, mean, var, scale, s1, s2, 1e-5, n * hw, dx,
                                                              hw, c, "row", "row"),
        "conv bias gradient": (lambda: row_sums(ctx, dz, bias_grad)) if then else
        (lambda: conv.channel_sums(ctx, dy, bias_grad)),
    }

    def waited(run):
        def once():
            run()
            ctx.finish()
        return once
    return {name: waited(run) for name, run in found.items()}, (y, dx, bias_grad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="0ddf461")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        contexts = {"then": clnet.Context(args.device, templates_at(args.rev, Path(folder))),
                    "now": clnet.Context(args.device)}
        made = {name: runs(ctx, name == "then") for name, ctx in contexts.items()}
        times = {(name, op): [] for name in made for op in made[name][0]}
        for _ in range(args.rounds):
            for name, (ops, _) in made.items():
                for op, run in ops.items():
                    times[name, op].append(common.median_seconds(run, 11))
        outputs = [[a.get() for a in made[name][1]] for name in made]
        info = common.machine(contexts["now"])
    for then, now in zip(*outputs):  # the same numbers, to rounding
        np.testing.assert_allclose(now, then, rtol=1e-4, atol=1e-3)
    rows = [[op, min(times["then", op]) * 1e3, min(times["now", op]) * 1e3,
             min(times["then", op]) / min(times["now", op])] for op in made["now"][0]]
    print(f"{common.device_line(info)}; {args.rev} against the working tree; ms\n")
    print(common.table(["kernel", args.rev, "now", "ratio"], rows))
    common.write_json("norm_kernels", {"machine": info, "rev": args.rev, "rows": rows})


if __name__ == "__main__":
    main()
