"""Two versions of clnet, the same training epochs, paired: is a change any slower?

    git worktree add /tmp/clnet-base <commit>         # the older code, beside this checkout
    .venv/bin/python bench/bench_versions.py --base /tmp/clnet-base [--repeats 21] [--only mlp digits]

The clnet half of bench_train (the four reference networks of clnet.app.bench.references, an
epoch through the public API: `clnet.sgd` for one batch, `fit` otherwise) with both versions in
one process: the older package is copied beside its kernels as `clnet_base` and imported next to
this checkout's `clnet`, each with a context of its own on the same device. Epochs alternate
base, new, new, base, ... and each pair's ratio new/base is taken from epochs measured seconds
apart, so the machine's slow and fast spells (up to 2x here, over minutes) fall on both. The
table gives each version's median ms per step and the median of the paired ratios (below 1: the
new code is faster), with its interquartile range.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.app.bench.references import RATE, TRAINING_NETWORKS, training_data  # noqa: E402


def import_base(tree: Path, folder: Path):
    """The package of the checkout `tree` as `clnet_base` (its kernels/ beside it)."""
    shutil.copytree(tree / "clnet", folder / "clnet_base")
    shutil.copytree(tree / "kernels", folder / "kernels")
    sys.path.insert(0, str(folder))
    return importlib.import_module("clnet_base")


def epoch_of(library, ctx, key: str):
    """A function that runs one epoch of `key` with `library` (clnet or clnet_base) and waits."""
    inputs, layers, cost, optimizer, batch, samples = TRAINING_NETWORKS[key]
    x, y = training_data(key)
    net = library.InferenceNetwork(ctx, inputs, [library.FullyConnected(o, a) for o, a in layers], seed=1)
    if optimizer == "sgd" and batch == samples:
        training = library.TrainingNetwork(net, x)
        return lambda: (library.sgd(training, y, cost, 1, RATE), ctx.finish())
    adam = library.Adam(1e-3)
    return lambda: (net.fit(x, y, cost, 1, batch, optimizer=adam, progress=False, seed=0), ctx.finish())


def seconds(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="a checkout of the older code")
    parser.add_argument("--repeats", type=int, default=21, help="pairs of epochs per network")
    parser.add_argument("--only", nargs="+", default=list(TRAINING_NETWORKS), choices=sorted(TRAINING_NETWORKS))
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    rows, record = [], {}
    with tempfile.TemporaryDirectory() as folder:
        base = import_base(args.base, Path(folder))
        with base.Context(args.device) as base_ctx, clnet.Context(args.device) as ctx:
            for key in args.only:
                runs = {"base": epoch_of(base, base_ctx, key), "new": epoch_of(clnet, ctx, key)}
                for run in runs.values():
                    run()  # builds and records
                found = {"base": [], "new": []}
                for i in range(args.repeats):
                    for name in ("base", "new") if i % 2 == 0 else ("new", "base"):
                        found[name].append(seconds(runs[name]))
                ratios = sorted(n / b for n, b in zip(found["new"], found["base"]))
                steps = -(-TRAINING_NETWORKS[key][5] // TRAINING_NETWORKS[key][4])
                quartiles = statistics.quantiles(ratios, n=4)
                rows.append([key, statistics.median(found["base"]) * 1e3 / steps,
                             statistics.median(found["new"]) * 1e3 / steps, statistics.median(ratios),
                             f"{quartiles[0]:.2f}-{quartiles[2]:.2f}"])
                record[key] = found
            info = common.machine(ctx)
    print(f"ms per step, float32, on {info['device']['name']}; base {args.base} against new {HERE.parent}, "
          f"{args.repeats} pairs of epochs\n")
    print(common.table(["network", "base ms", "new ms", "new/base (median of pairs)", "quartiles"], rows))
    path = common.write_json("versions", {"base": str(args.base), "seconds": record, "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
