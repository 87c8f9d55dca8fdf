"""Each kernel of a CNN training step with its time on the device, from OpenCL's event profiling:
what profile_step.py's per-layer rows are made of.

    .venv/bin/python bench/profile_kernels.py [--only lenet cifar] [--repeats R] [--device D]

bench_conv's networks (float32, batch 64). Every launch of one layer's training half (forward,
then backward) is waited on and timed by its events (CL_PROFILING_COMMAND_START to END), so a
row is the kernel alone, without the launches' overhead; a kernel launched several times in a
layer is one row with its count. Times: the median over `repeats` runs of the layer.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyopencl as cl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_conv  # noqa: E402
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.nn import Step  # noqa: E402
from clnet.runtime import kernels  # noqa: E402


class Timer:
    """Wraps Kernel.__call__: each launch waited on, its device time added under its name."""

    def __init__(self):
        self.times: dict[str, list[float]] = defaultdict(list)
        self.launch = kernels.Kernel.__call__
        timer = self

        def timed(kernel, queue, *args, **arguments):
            event = timer.launch(kernel, queue, *args, **arguments)
            event.wait()
            timer.times[kernel.name].append((event.profile.end - event.profile.start) * 1e-9)
            return event

        kernels.Kernel.__call__ = timed

    def take(self) -> dict[str, list[float]]:
        times, self.times = self.times, defaultdict(list)
        return times


def profile(ctx, key: str, repeats: int) -> list[list]:
    x, y = bench_conv.data(key)
    net = clnet.InferenceNetwork(ctx, bench_conv.SHAPES[key], bench_conv.clnet_layers(key), seed=0)
    training = clnet.TrainingNetwork(net, x[:bench_conv.BATCH])
    timer = Timer()
    rows = []
    for index, trainer in enumerate(training.layers):
        for name, run in (("forward", lambda t=trainer: t.forward(Step())), ("backward", trainer.backward)):
            runs = []
            for _ in range(repeats + 1):
                run()
                ctx.finish()
                runs.append(timer.take())
            for kernel in runs[1]:
                each = [sum(r[kernel]) for r in runs[1:]]
                rows.append([f"{index} {net.specs[index].brief()}", name, kernel, len(runs[1][kernel]),
                             float(np.median(each)) * 1e3])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=list(bench_conv.SHAPES), choices=sorted(bench_conv.SHAPES))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    ctx = clnet.Context(args.device)
    # a queue that records the events' times, in place of the context's own (nothing queued yet)
    ctx._queue = cl.CommandQueue(ctx.context, ctx.info.cl_device,
                                 properties=cl.command_queue_properties.PROFILING_ENABLE)
    for key in args.only:
        rows = profile(ctx, key, args.repeats)
        print(f"\n{key}: device ms per kernel (launches per layer pass)")
        print(common.table(["layer", "pass", "kernel", "launches", "ms"], rows))
        print(f"total {sum(r[-1] for r in rows):.3g} ms")


if __name__ == "__main__":
    main()
