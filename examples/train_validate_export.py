"""Digits with what a training run needs in practice: a validation split, dropout, a cosine
learning-rate schedule with warm-up, early stopping, and the trained network exported to ONNX
and checked with onnxruntime.

    .venv/bin/python examples/train_validate_export.py [--device SPEC] [--out digits.onnx]

64 inputs -> 192 relu (dropout 0.2) -> 10 softmax, Adam with a cosine schedule from 3e-3 after
100 warm-up steps, batches of 32, at most 60 epochs, early stopping after 15 epochs without a
better validation cost. Of the 1,797 images, the test split is examples/digits.py's (20%); 5% of
the rest validate. Needs scikit-learn, onnx and onnxruntime
(`pip install 'clnet[examples,onnx]' onnxruntime`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import clnet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import load_data  # noqa: E402

EPOCHS, BATCH, PATIENCE = 60, 32, 15


def run(ctx, out: Path, seed: int = 0, progress: bool = True) -> dict:
    """Train, stop early, export; returns the test accuracy of clnet and of onnxruntime."""
    x_train, y_train, x_test, y_test = load_data(seed)
    validate = np.random.default_rng(seed).permutation(len(x_train))[: len(x_train) // 20]
    train = np.setdiff1d(np.arange(len(x_train)), validate)
    net = clnet.InferenceNetwork(ctx, 64, [clnet.FullyConnected(192, "relu", dropout=0.2),
                                           clnet.FullyConnected(10, "softmax")], seed=seed)
    steps = EPOCHS * -(-len(train) // BATCH)
    started = time.perf_counter()
    history = net.fit(x_train[train], y_train[train], "cross_entropy", epochs=EPOCHS, batch_size=BATCH,
                      optimizer=clnet.Adam(), schedule=clnet.Cosine(3e-3, total_steps=steps, warmup_steps=100),
                      validation=(x_train[validate], y_train[validate]), early_stopping=PATIENCE, seed=seed,
                      progress=progress)
    seconds = time.perf_counter() - started
    path = net.to_onnx(out)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path))
    onnx_predictions = session.run(None, {"x": x_test.astype(np.float32)})[0].argmax(axis=1)
    return {"accuracy": net.accuracy(x_test, y_test), "onnx_accuracy": float(np.mean(onnx_predictions == y_test)),
            "agree": float(np.mean(onnx_predictions == net.predict(x_test))), "epochs": len(history),
            "best_epoch": history.best_epoch, "stopped_early": history.stopped_early,
            "validation_accuracy": history.validation_accuracy[history.best_epoch - 1], "seconds": seconds,
            "path": path, "weights": np.concatenate([p.get().ravel() for p in net.parameters()])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=None, help="the ONNX file (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, clnet.Context(args.device) as ctx:
        result = run(ctx, args.out or Path(folder) / "digits.onnx")
        print(f"digits on {ctx.info.name}: {result['epochs']} epochs (best {result['best_epoch']}, validation "
              f"accuracy {result['validation_accuracy']:.3f}{', stopped early' if result['stopped_early'] else ''}) "
              f"in {result['seconds']:.1f} s; test accuracy {result['accuracy']:.3f}, onnxruntime on the exported "
              f"model {result['onnx_accuracy']:.3f} (same class for {result['agree']:.1%} of the images)")


if __name__ == "__main__":
    main()
