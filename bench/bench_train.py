"""Training speed: ms per SGD epoch, clnet beside the same math in numpy and in PyTorch (CPU).

    .venv/bin/python bench/bench_train.py [--device SPEC] [--repeats R] [--only small|large]

Networks (float32, quadratic cost, one epoch = forward + backward + update over the batch):
  small  784 -> 512 tanh -> 10 sigmoid, batch 256
  large  10000 -> 5000 tanh -> 1000 sigmoid -> 10 sigmoid, batch 1000 (the seed article's
         network, with a tenth of its batch to fit this machine)
PyTorch runs when it is installed (`pip install torch==2.13.0`). Ratios: reference / clnet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import clnet  # noqa: E402
from clnet.app.bench.references import NETWORKS, RATE, network_data, numpy_epoch, torch_epoch  # noqa: E402
from clnet.ops.arrays import to_device_batch  # noqa: E402


def measure(ctx, key: str, repeats: int) -> dict:
    """Seconds per epoch of network `key` for clnet, numpy and (if installed) PyTorch."""
    inputs, layers, batch = NETWORKS[key]
    x, y = network_data(key)
    net = clnet.InferenceNetwork(ctx, inputs, [clnet.FullyConnected(o, a) for o, a in layers], init="xavier", seed=1)
    training = clnet.TrainingNetwork(net, x)
    y_dev = to_device_batch(ctx, y, net.outputs, net.dtype, "y")
    row = {"clnet": common.median_seconds(
        lambda: (clnet.sgd(training, y_dev, "quadratic", 1, RATE), ctx.finish()), repeats)}
    params = [(la.weights.get(), la.bias.get()) for la in net.layers]
    names = [a for _, a in layers]
    row["numpy"] = common.median_seconds(lambda: numpy_epoch(params, names, x, y), repeats)
    try:
        import torch

        row["torch"] = common.median_seconds(torch_epoch(inputs, layers, x, y), repeats)
        row["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=sorted(NETWORKS))
    args = parser.parse_args()
    results = {}
    with clnet.Context(args.device) as ctx:
        for key in NETWORKS:
            if not args.only or key == args.only:
                results[key] = measure(ctx, key, args.repeats if key == "small" else max(2, args.repeats // 2))
        info = common.machine(ctx)

    print(f"ms per SGD epoch, float32; clnet on {info['device']['name']} ({info['device']['platform']}); "
          f"numpy and PyTorch on {info['cores']} cores of {info['cpu']}\n")
    rows = []
    for key, row in results.items():
        inputs, layers, batch = NETWORKS[key]
        shape = " -> ".join([str(inputs)] + [f"{o} {a}" for o, a in layers]) + f", batch {batch}"
        torch_ms = row.get("torch")
        rows.append([shape, row["clnet"] * 1e3, row["numpy"] * 1e3, torch_ms * 1e3 if torch_ms else "-",
                     row["numpy"] / row["clnet"], row["torch"] / row["clnet"] if torch_ms else "-"])
    print(common.table(["network", "clnet ms", "numpy ms", "torch ms", "numpy/clnet", "torch/clnet"], rows))
    path = common.write_json("train", {"seconds_per_epoch": results, "machine": info})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
