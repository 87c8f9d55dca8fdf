"""3x3 stride-1 convolutions by Winograd's F(2x2, 3x3) (clnet/ops/winograd.py) against the path clnet
takes without it (conv_direct, or im2col and a GEMM), in the same run: what winograd.applies' rule
is drawn from.

    .venv/bin/python bench/bench_winograd.py [--rounds R] [--batch B] [--device D] [--networks NAME ...]

float32, padding 1, as many channels out as in, batch 16 (resnet18's and vgg16's layers on 64 x 64
inputs are 128-512 channels on 8x8 to 2x2 images). "fwd": conv.forward with a relu; "fwd+bwd": as
a training step runs it, conv.forward and conv.backward (dC/dx, whose transposed convolution
Winograd also computes, and the filters' and bias's gradients, which it does not), the backward
pass reusing what the forward pass leaves (im2col's column matrix, conv_direct's padded images).
ms, each the best of `rounds` alternating medians of 7; ratio = without / with (above 1: Winograd is
faster); "chosen": whether winograd.applies takes it.

--networks: bench_zoo's training steps of those torchvision classifiers (batch 16 of 64x64), built
twice, with Winograd where applies takes it and nowhere, alternating with PyTorch's step, `rounds`
rounds of medians of 3: the best and the median round, ms per step.
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
from clnet.ops import conv, winograd  # noqa: E402

SHAPES = [(64, 16), (128, 16), (64, 8), (128, 8), (256, 8), (512, 8), (128, 4), (256, 4), (512, 4), (256, 2),
          (512, 2), (256, 7), (128, 14)]  # (channels, image side)
RULE = (winograd.MIN_CHANNELS, winograd.MAX_PIXELS, winograd.TILE_FILTER_BYTES)


def use(winograd_on: bool) -> None:
    """Winograd wherever it can run (on), or nowhere."""
    winograd.MIN_CHANNELS, winograd.MAX_PIXELS, winograd.TILE_FILTER_BYTES = (0, 1 << 30, 1 << 40) if winograd_on \
        else (1 << 30, 0, 0)


def rows(ctx, rounds: int, batch: int) -> list[list]:
    found, q = [], ctx.queue
    for channels, side in SHAPES:
        g = conv.Geometry(channels, side, side, channels, 3, 3, 1, 1, 1, 1, 1, 1, 1, side, side)
        rng = np.random.default_rng(0)
        x = cla.to_device(q, rng.standard_normal((batch, channels, side, side), np.float32))
        w = cla.to_device(q, rng.standard_normal((channels, channels, 3, 3), np.float32) * 0.05)
        b = cla.to_device(q, rng.standard_normal(channels, np.float32))
        y, dx = cla.empty_like(x), cla.empty_like(x)
        gw, gb, flipped = cla.empty_like(w), cla.empty_like(b), cla.empty_like(w)
        cols_bytes, product_bytes = conv.workspace_bytes(g, batch, 4)
        cols, product = cla.empty(q, cols_bytes // 4, np.float32), cla.empty(q, product_bytes // 4, np.float32)

        def forward(x=x, w=w, b=b, y=y, cols=cols, product=product, g=g):
            conv.forward(ctx, x, w, b, y, "relu", None, None, cols, product, g)
            ctx.finish()

        def backward(x=x, w=w, b=b, y=y, gw=gw, gb=gb, dx=dx, flipped=flipped, cols=cols, product=product, g=g,
                     batch=batch):
            conv.forward(ctx, x, w, b, y, "linear", None, None, cols, product, g)
            conv.backward(ctx, x, y, w, gw, gb, dx, flipped, cols, product, g, False,
                          conv.keeps_columns(ctx, np.dtype(np.float32), g, batch))
            ctx.finish()

        times: dict[str, list[float]] = {}
        for _ in range(rounds):
            for on in (False, True):
                use(on)
                for name, run in (("forward", forward), ("backward", backward)):
                    times.setdefault(f"{name} {on}", []).append(common.median_seconds(run, 7))
        winograd.MIN_CHANNELS, winograd.MAX_PIXELS, winograd.TILE_FILTER_BYTES = RULE
        best = {name: min(t) * 1e3 for name, t in times.items()}
        found.append([f"{channels} ch, {side}x{side}", best["forward False"], best["forward True"],
                      best["forward False"] / best["forward True"], best["backward False"], best["backward True"],
                      best["backward False"] / best["backward True"],
                      "yes" if winograd.applies(ctx, np.dtype(np.float32), g, batch) else "no"])
    return found


def network_rows(ctx, names: list[str], rounds: int) -> list[list]:
    import statistics

    import bench_zoo

    found = []
    for name in names:
        runs = {}
        for on in (False, True):
            winograd.MIN_CHANNELS = RULE[0] if on else 1 << 30  # the rule, or nowhere: when built and run
            built, _ = bench_zoo.runs(ctx, name)
            runs[on], runs["torch"] = built["clnet train"], built["torch train"]
        times: dict = {key: [] for key in runs}
        for _ in range(rounds):
            for key, run in runs.items():
                winograd.MIN_CHANNELS = RULE[0] if key is True else 1 << 30
                times[key].append(common.median_seconds(lambda run=run: (run(), ctx.finish()), 3) / bench_zoo.STEPS)
        winograd.MIN_CHANNELS = RULE[0]
        best = {key: min(t) * 1e3 for key, t in times.items()}
        middle = {key: statistics.median(t) * 1e3 for key, t in times.items()}
        found.append([name, best[False], best[True], best[False] / best[True], best["torch"],
                      best[True] / best["torch"], middle[False] / middle[True], middle[True] / middle["torch"]])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default=None)
    parser.add_argument("--networks", nargs="*", default=[])
    args = parser.parse_args()
    ctx = clnet.Context(args.device)
    info = common.machine(ctx)
    if args.networks:
        networks = network_rows(ctx, args.networks, args.rounds)
        print(f"{common.device_line(info)}; ms per training step\n")
        print(common.table(["network", "without", "Winograd", "ratio", "PyTorch", "Winograd / PyTorch",
                            "median ratio", "median / PyTorch"], networks))
        common.write_json("winograd_networks", {"machine": info, "rows": networks})
        return
    found = rows(ctx, args.rounds, args.batch)
    print(f"{common.device_line(info)}; batch {args.batch}; ms\n")
    print(common.table(["3x3 convolution", "fwd without", "fwd Winograd", "ratio", "fwd+bwd without",
                        "fwd+bwd Winograd", "ratio", "chosen"], found))
    common.write_json("winograd", {"machine": info, "batch": args.batch, "rows": found})


if __name__ == "__main__":
    main()
