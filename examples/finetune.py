"""Fine-tuning an imported classifier: torchvision's resnet18 (random weights: nothing is
downloaded) exported to ONNX, imported into clnet, its 1000-class head replaced by a 10-class
one, the body frozen, the head trained on scikit-learn's digits, saved, exported again and run
in onnxruntime.

    .venv/bin/python examples/finetune.py [--device SPEC] [--epochs N]

The digits (8x8) are scaled up to 3x32x32 images. With random weights the frozen body is a
random feature extractor, so the accuracy is modest; what the example shows is the round trip
and that training changes the head alone (the body's weights stay bit-identical). Needs PyTorch,
torchvision, onnx and onnxruntime (`make test` installs them) and scikit-learn.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import clnet
from clnet.app import torchvision_models


def load_data(samples: int = 600, seed: int = 0):
    """(x_train, y_train, x_test, y_test): digits as (samples, 3, 32, 32) images, labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images / 16.0, np.ones((4, 4)))  # 8x8 -> 32x32, each pixel 4x4
    x = np.repeat(((images - 0.3) / 0.4)[:, None], 3, axis=1).astype(np.float32)  # three channels
    order = np.random.default_rng(seed).permutation(len(x))[:samples]
    split = samples * 2 // 3
    return x[order[:split]], digits.target[order[:split]], x[order[split:]], digits.target[order[split:]]


def run(ctx, epochs: int = 6, seed: int = 0, progress: bool = True, folder: str | None = None) -> dict:
    """Import, re-head, freeze, train, save and export; returns the figures the example prints."""
    import onnxruntime

    x_train, y_train, x_test, y_test = load_data(seed=seed)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(folder or scratch)
        model = torchvision_models.classifier("resnet18", seed=seed)
        imported = clnet.from_onnx(torchvision_models.export(model, x_train[:2], folder / "resnet18.onnx"), ctx)
        net = imported.with_head([clnet.FullyConnected(10)], seed=seed)  # a new head: logits of 10 classes
        net.freeze()  # every layer but the new head
        before = net.host_arrays()
        chance = net.accuracy(x_test, y_test)
        started = time.perf_counter()
        net.fit(x_train, y_train, epochs=epochs, batch_size=50, optimizer=clnet.Adam(3e-3), seed=seed,
                progress=progress)  # cross-entropy on the logits, chosen from the labels
        seconds = time.perf_counter() - started
        after = net.host_arrays()
        body = [name for name in before if not name.startswith(f"layer_{len(net.specs) - 1}.")]
        frozen = all(np.array_equal(before[name], after[name]) for name in body if "running" not in name)
        loaded = clnet.load(net.save(folder / "digits-resnet18"), ctx)
        session = onnxruntime.InferenceSession(str(net.to_onnx(folder / "digits-resnet18.onnx")))
        exported = session.run(None, {"x": x_test[:8]})[0]
        agrees = np.allclose(exported, net(x_test[:8]).get(), rtol=1e-3, atol=1e-3 * np.abs(exported).max())
        return {"accuracy": net.accuracy(x_test, y_test), "before": chance, "chance": 0.1, "seconds": seconds,
                "epochs": epochs, "frozen": frozen, "loaded": loaded.accuracy(x_test, y_test),
                "onnxruntime": agrees, "layers": len(net.specs), "trainable": sum(p.size for p in net.parameters()),
                "test": len(x_test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    with clnet.Context(args.device) as ctx:
        result = run(ctx, args.epochs)
    print(f"resnet18, body frozen, new head on digits, on {ctx.info.name}: test accuracy {result['accuracy']:.3f} "
          f"(chance {result['chance']:.2f}: +{result['accuracy'] - result['chance']:.2f}; before training "
          f"{result['before']:.3f}), {result['epochs']} epochs in {result['seconds']:.1f} s; body bit-identical: "
          f"{result['frozen']}; onnxruntime agrees: {result['onnxruntime']}")


if __name__ == "__main__":
    main()
