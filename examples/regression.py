"""Regression of a one-dimensional function, as in part 14 of the series ("Learning a
Regression"): learn y = sin(x) + x / 3 on [-3, 3] from 2,000 noisy samples.

    .venv/bin/python examples/regression.py [--device SPEC]

1 -> 32 tanh -> 32 tanh -> 1 linear, quadratic cost, Adam, mini-batches of 64. Prints the mean
squared error and R² on a clean test grid (`net.evaluate`), beside the MSE of the best constant.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import clnet


def target(x: np.ndarray) -> np.ndarray:
    return np.sin(x) + x / 3


def run(ctx, epochs: int = 60, seed: int = 0, progress: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(2000, 1)).astype(np.float32)
    y = (target(x) + rng.normal(scale=0.05, size=x.shape)).astype(np.float32)
    grid = np.linspace(-3, 3, 301, dtype=np.float32).reshape(-1, 1)
    net = clnet.InferenceNetwork(ctx, 1, [clnet.FullyConnected(32, "tanh"), clnet.FullyConnected(32, "tanh"),
                                          clnet.FullyConnected(1, "linear")], seed=seed)  # Xavier for all three
    started = time.perf_counter()
    history = net.fit(x, y, "quadratic", epochs=epochs, batch_size=64, optimizer=clnet.Adam(learning_rate=1e-2),
                      seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    scores = net.evaluate(grid, target(grid))  # cost, mse, mae and r2
    return {"mse": scores["mse"], "r2": scores["r2"],
            "baseline_mse": float(np.mean((target(grid) - target(grid).mean()) ** 2)),
            "cost": history[-1], "seconds": seconds, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    with clnet.Context(args.device) as ctx:
        result = run(ctx, args.epochs)
    print(f"sin(x) + x/3 on {ctx.info.name}: test MSE {result['mse']:.2e}, R² {result['r2']:.4f} (the best constant: "
          f"{result['baseline_mse']:.2f}) after {result['epochs']} epochs in {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
