"""Initialization speed: time to init the seed article's large network (55.01 M weights).

    .venv/bin/python bench/bench_init.py [--device SPEC] [--repeats R]

10000 -> 5000 tanh -> 1000 sigmoid -> 10 sigmoid, float32, Xavier (normal, var 2/(in+out)),
biases zero. clnet draws on the device (Philox + Box-Muller); numpy draws with
default_rng().standard_normal(dtype=float32) and scales; PyTorch (if installed) with
torch.nn.init.xavier_normal_. The article: 14.3 s with JVM random numbers, 209 ms with MKL's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.app.bench.references import numpy_xavier, torch_xavier  # noqa: E402

WIDTHS = [10000, 5000, 1000, 10]
ACTIVATIONS = ["tanh", "sigmoid", "sigmoid"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    seconds = {}
    with clnet.Context(args.device) as ctx:
        layers = [clnet.FullyConnected(o, a) for o, a in zip(WIDTHS[1:], ACTIVATIONS)]
        net = clnet.InferenceNetwork(ctx, WIDTHS[0], layers)
        weights = sum(la.weights.size for la in net.layers)
        seconds["clnet init (device)"] = common.median_seconds(
            lambda: (clnet.init(net, "xavier", seed=1), ctx.finish()), args.repeats)
        info = common.machine(ctx)
    shapes = list(zip(WIDTHS[1:], WIDTHS[:-1]))
    seconds["numpy init (host)"] = common.median_seconds(numpy_xavier(shapes, np.random.default_rng(1)), args.repeats)
    try:
        seconds["torch init (host)"] = common.median_seconds(torch_xavier(), args.repeats)
    except ImportError:
        pass

    reference = seconds["numpy init (host)"]
    print(f"init of {weights / 1e6:.2f} M weights, xavier, float32; clnet on {info['device']['name']}; "
          f"hosts: {info['cores']} cores of {info['cpu']}; median of {args.repeats}\n")
    print(common.table(["method", "ms", "speed-up over numpy"],
                       [[k, v * 1e3, reference / v] for k, v in seconds.items()]))
    path = common.write_json("init", {"weights": weights, "seconds": seconds, "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
