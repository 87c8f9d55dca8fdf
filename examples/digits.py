"""Handwritten digits: a softmax network on scikit-learn's bundled 8x8 digits (no download).

    .venv/bin/python examples/digits.py [--device SPEC]

1,797 images of 8x8 pixels, 64 inputs -> 128 relu -> 10 softmax, cross-entropy cost, Adam,
mini-batches of 32; 80% of the images train, 20% test. Needs scikit-learn (`pip install
clnet[examples]`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import clnet


def load_data(seed: int = 0):
    """(x_train, y_train, x_test, y_test): pixels scaled to [0, 1], integer labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(0.8 * len(x))
    train, test = order[:split], order[split:]
    return x[train], y[train], x[test], y[test]


def run(ctx, epochs: int = 30, seed: int = 0, progress: bool = True) -> dict:
    """Train the digits network on ctx; returns test accuracy, last cost and seconds."""
    x_train, y_train, x_test, y_test = load_data(seed)
    # starts initialized: PyTorch's default for the relu layer, Xavier for the softmax layer, from `seed`
    net = clnet.InferenceNetwork(ctx, 64, [clnet.FullyConnected(128, "relu"), clnet.FullyConnected(10, "softmax")],
                                 seed=seed)
    started = time.perf_counter()
    history = net.fit(x_train, y_train, "cross_entropy", epochs=epochs, batch_size=32,
                      optimizer=clnet.Adam(learning_rate=2e-3), seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    return {"accuracy": net.accuracy(x_test, y_test), "train_accuracy": net.accuracy(x_train, y_train),
            "cost": history[-1], "seconds": seconds, "epochs": epochs, "train": len(x_train), "test": len(x_test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    with clnet.Context(args.device) as ctx:
        result = run(ctx, args.epochs)
    print(f"digits on {ctx.info.name}: test accuracy {result['accuracy']:.3f} "
          f"(train {result['train_accuracy']:.3f}) after {result['epochs']} epochs in {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
