"""A small convolutional network on scikit-learn's bundled 8x8 digits (no download).

    .venv/bin/python examples/cnn_digits.py [--device SPEC] [--epochs N]

1,797 images of 1x8x8 pixels: conv 16 3x3 (padding 1) + batch norm + relu, max pool 2,
conv 32 3x3 (padding 1) + batch norm + relu, global average pool, flatten, 10 softmax;
cross-entropy cost, Adam with a cosine schedule (the rate falls to 0, so the weights settle and
the batch norms' running statistics follow them), mini-batches of 32, the same split as
examples/digits.py (80% train, 20% test). Needs scikit-learn (`pip install clnet[examples]`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import clnet


def load_data(seed: int = 0):
    """(x_train, y_train, x_test, y_test): images (samples, 1, 8, 8) scaled to [0, 1], labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # one channel
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(0.8 * len(x))
    train, test = order[:split], order[split:]
    return x[train], y[train], x[test], y[test]


def network(ctx, seed: int = 0, dtype=np.float32) -> clnet.InferenceNetwork:
    return clnet.InferenceNetwork(ctx, (1, 8, 8), [
        clnet.Conv2d(16, 3, padding=1), clnet.BatchNorm(), clnet.Activation("relu"),
        clnet.MaxPool2d(2),
        clnet.Conv2d(32, 3, padding=1), clnet.BatchNorm(), clnet.Activation("relu"),
        clnet.GlobalAvgPool2d(), clnet.Flatten(),
        clnet.FullyConnected(10, "softmax")], seed=seed, dtype=dtype)


def run(ctx, epochs: int = 30, seed: int = 0, progress: bool = True) -> dict:
    """Train the CNN on ctx; returns test accuracy, last cost, seconds and the parameters."""
    x_train, y_train, x_test, y_test = load_data(seed)
    net = network(ctx, seed)
    started = time.perf_counter()
    steps = epochs * -(-len(x_train) // 32)
    history = net.fit(x_train, y_train, "cross_entropy", epochs=epochs, batch_size=32, optimizer=clnet.Adam(),
                      schedule=clnet.Cosine(3e-3, total_steps=steps), seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    return {"accuracy": net.accuracy(x_test, y_test), "train_accuracy": net.accuracy(x_train, y_train),
            "cost": history[-1], "seconds": seconds, "epochs": epochs, "train": len(x_train), "test": len(x_test),
            "arrays": net.host_arrays()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    with clnet.Context(args.device) as ctx:
        result = run(ctx, args.epochs)
    print(f"CNN on digits on {ctx.info.name}: test accuracy {result['accuracy']:.3f} "
          f"(train {result['train_accuracy']:.3f}) after {result['epochs']} epochs in {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
