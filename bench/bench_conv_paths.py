"""Two ways to one convolution pass, in the same run (issue 34): the filters' gradient from the
padded images (conv_direct.filter_gradients) against im2col and a GEMM (conv.weight_gradients), and
1x1 convolutions of short rows as images of one row (conv_geometry.flat) against their rows as they are.

    .venv/bin/python bench/bench_conv_paths.py [--rounds R] [--device D]

float32. The filters' gradient on bench_conv's layers (batch 64), with the images padded (or
im2col) each time; the 1x1 convolutions (batch 16) as torchvision's classifiers have them, the
forward pass alone and the forward with the backward pass (conv.forward, conv.backward: dC/dx, the
filters' and the bias's gradients). ms, each the best of `rounds` alternating medians of 7; ratio
= old / new (above 1: the path clnet takes now is faster).
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
from clnet.ops import conv, conv_direct, conv_geometry  # noqa: E402

FILTER_GRADIENTS = {  # name: (in, out, image size, kernel, padding)
    "LeNet conv 1 -> 6, 5x5": (1, 6, 28, 5, 2), "LeNet conv 6 -> 16, 5x5": (6, 16, 14, 5, 0),
    "CIFAR conv 3 -> 32": (3, 32, 32, 3, 1), "CIFAR conv 32 -> 32": (32, 32, 32, 3, 1),
    "CIFAR conv 32 -> 64": (32, 64, 16, 3, 1), "CIFAR conv 64 -> 64": (64, 64, 16, 3, 1),
}
ONE_BY_ONE = {"1x1 128 -> 32, 8x8 (densenet121)": (128, 32, 8), "1x1 256 -> 64, 8x8": (256, 64, 8),
              "1x1 64 -> 256, 4x4 (resnet50)": (64, 256, 4)}


def geometry(channels, out, size, kernel, padding) -> conv.Geometry:
    side = size + 2 * padding - kernel + 1
    return conv.Geometry(channels, size, size, out, kernel, kernel, 1, 1, padding, padding, 1, 1, 1, side, side)


def best(variants: dict, rounds: int) -> dict:
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            times[name].append(common.median_seconds(run, 7))
    return {name: min(t) * 1e3 for name, t in times.items()}


def filter_gradient_rows(ctx, rounds: int) -> list[list]:
    rows, q = [], ctx.queue
    for name, shape in FILTER_GRADIENTS.items():
        g, batch = geometry(*shape), 64
        rng = np.random.default_rng(0)
        x = cla.to_device(q, rng.standard_normal((batch, g.channels, g.height, g.width), np.float32))
        delta = cla.to_device(q, rng.standard_normal((batch, g.out_channels, g.out_h, g.out_w), np.float32))
        dz = cla.to_device(q, delta.get().transpose(1, 0, 2, 3).reshape(g.out_channels, -1))
        grad = cla.empty(q, (g.out_channels, g.channels, g.kh, g.kw), np.float32)
        cols = cla.empty(q, conv.workspace_bytes(g, batch, 4)[0] // 4, np.float32)

        def im2col(g=g, x=x, dz=dz, grad=grad, cols=cols):
            plain = cols[:g.rows * dz.shape[1]].reshape(g.rows, dz.shape[1])
            conv.im2col(ctx, x, plain, g)
            conv.weight_gradients(ctx, dz, plain, grad, g, False)
            ctx.finish()

        def padded(g=g, x=x, delta=delta, grad=grad, cols=cols):
            conv_direct.filter_gradients(ctx, conv_direct.pad(ctx, x, cols, g), delta, grad, g, False)
            ctx.finish()

        found = best({"im2col + GEMM": im2col, "padded images": padded}, rounds)
        rows.append([name, found["im2col + GEMM"], found["padded images"],
                     found["im2col + GEMM"] / found["padded images"]])
    return rows


def one_by_one_rows(ctx, rounds: int) -> list[list]:
    rows, q, one_row = [], ctx.queue, conv_geometry.flat
    for name, (channels, out, size) in ONE_BY_ONE.items():
        g, batch = geometry(channels, out, size, 1, 0), 16
        rng = np.random.default_rng(0)
        x = cla.to_device(q, rng.standard_normal((batch, channels, size, size), np.float32))
        w = cla.to_device(q, rng.standard_normal((out, channels, 1, 1), np.float32))
        b = cla.to_device(q, rng.standard_normal(out, np.float32))
        y, dx = cla.empty(q, (batch, out, size, size), np.float32), cla.empty_like(x)
        gw, gb, flipped = cla.empty_like(w), cla.empty_like(b), cla.empty_like(w)
        cols_bytes, product_bytes = conv.workspace_bytes(g, batch, 4)
        cols, product = cla.empty(q, cols_bytes // 4, np.float32), cla.empty(q, product_bytes // 4, np.float32)
        found = {}
        for shaped in ("rows", "one row"):
            conv_direct.flat = one_row if shaped == "one row" else (lambda g: g)

            def forward(x=x, w=w, b=b, y=y, cols=cols, product=product, g=g):
                conv.forward(ctx, x, w, b, y, "relu", None, None, cols, product, g)
                ctx.finish()

            def both(x=x, w=w, b=b, y=y, dx=dx, gw=gw, gb=gb, flipped=flipped, cols=cols, product=product, g=g,
                     batch=batch):
                conv.forward(ctx, x, w, b, y, "linear", None, None, cols, product, g)
                conv.backward(ctx, x, y, w, gw, gb, dx, flipped, cols, product, g, False,
                              conv.keeps_columns(ctx, np.dtype(np.float32), g, batch))
                ctx.finish()
            found.update({f"{shaped} {k}": v for k, v in best({"fwd": forward, "both": both}, rounds).items()})
        conv_direct.flat = one_row
        rows.append([name, found["rows fwd"], found["one row fwd"], found["rows fwd"] / found["one row fwd"],
                     found["rows both"], found["one row both"], found["rows both"] / found["one row both"]])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    ctx = clnet.Context(args.device)
    gradients, ones = filter_gradient_rows(ctx, args.rounds), one_by_one_rows(ctx, args.rounds)
    info = common.machine(ctx)
    print(f"{common.device_line(info)}; ms\n")
    print(common.table(["filters' gradient", "im2col + GEMM", "padded images", "ratio"], gradients))
    print()
    print(common.table(["1x1 convolution", "rows fwd", "one row fwd", "ratio", "rows fwd+bwd", "one row fwd+bwd",
                        "ratio"], ones))
    common.write_json("conv_paths", {"machine": info, "filter_gradients": gradients, "one_by_one": ones})


if __name__ == "__main__":
    main()
