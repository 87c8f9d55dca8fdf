"""Two versions of clnet, the same training epochs, alternating: is a change any slower?

    git worktree add /tmp/clnet-base <commit>         # the older code, beside this checkout
    .venv/bin/python bench/bench_versions.py --base /tmp/clnet-base [--rounds 3] [--only mlp digits]

The clnet half of bench_train (the four reference networks of clnet.app.bench.references, an
epoch through the public API: `clnet.sgd` for one batch, `fit` otherwise) runs in a fresh
process with each source tree first on PYTHONPATH, the two trees alternating `rounds` times, so
that both see the machine's slow and fast spells. Each process reports the median of `repeats`
epochs per network after one warm-up epoch; the table gives the median over rounds, ms per
step, and new/base (below 1: the new code is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW = HERE.parent


def worker(only: list[str], repeats: int, device: str | None) -> None:
    """Time the networks with whichever clnet is first on the path; print {name: seconds}."""
    import time

    import clnet
    from clnet.app.bench.references import RATE, TRAINING_NETWORKS, training_data

    found = {}
    with clnet.Context(device) as ctx:
        for key in only:
            inputs, layers, cost, optimizer, batch, samples = TRAINING_NETWORKS[key]
            x, y = training_data(key)
            net = clnet.InferenceNetwork(ctx, inputs, [clnet.FullyConnected(o, a) for o, a in layers], seed=1)
            if optimizer == "sgd" and batch == samples:
                training = clnet.TrainingNetwork(net, x)

                def epoch(training=training, y=y, cost=cost):
                    clnet.sgd(training, y, cost, 1, RATE)
            else:
                adam = clnet.Adam(1e-3)

                def epoch(net=net, x=x, y=y, cost=cost, batch=batch, adam=adam):
                    net.fit(x, y, cost, 1, batch, optimizer=adam, progress=False, seed=0)
            times = []
            for _ in range(repeats + 1):
                started = time.perf_counter()
                epoch()
                ctx.finish()
                times.append(time.perf_counter() - started)
            found[key] = statistics.median(times[1:]) / -(-samples // batch)
    print(json.dumps(found))


def run_tree(tree: Path, only: list[str], repeats: int, device: str | None) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--repeats", str(repeats), "--only", *only]
    if device:
        command += ["--device", device]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd="/")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="a checkout of the older code")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", default=["mlp", "seed", "digits", "mnist"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.only, args.repeats, args.device)
        return
    sys.path.insert(0, str(HERE))
    import common

    rounds = {"base": [], "new": []}
    for _ in range(args.rounds):
        for name, tree in (("base", args.base), ("new", NEW)):
            rounds[name].append(run_tree(tree, args.only, args.repeats, args.device))
    rows = []
    for key in args.only:
        base = statistics.median(r[key] for r in rounds["base"])
        new = statistics.median(r[key] for r in rounds["new"])
        ratios = [n[key] / b[key] for b, n in zip(rounds["base"], rounds["new"])]
        rows.append([key, base * 1e3, new * 1e3, new / base, " ".join(f"{r:.2f}" for r in ratios)])
    print(f"ms per step, base {args.base} against new {NEW}, {args.rounds} rounds alternating\n")
    print(common.table(["network", "base ms", "new ms", "new/base", "each round"], rows))
    path = common.write_json("versions", {"base": str(args.base), "rounds": rounds, "machine": common.machine()})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
