"""The main job (`make demo`, `clnet demo`): show the devices, choose one, and run the seed
article's examples ("Deep Learning from Scratch to GPU", part 13: initializing weights) on it."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

from ..nn import FullyConnected, TrainingNetwork, init
from ..runtime.context import Context
from ..runtime.device import devices, format_table
from ..train.loops import sgd
from ..train.model import InferenceNetwork

X = np.array([[0.3, 0.9], [0.3, 0.9]], np.float32)
Y = np.array([[0.5], [0.5]], np.float32)
# The article's weights, as Neanderthal's transfer! fills its column-major 4x2 matrix.
SMALL = ([0.3, 0.1, 0.9, 0.0, 0.6, 2.0, 3.7, 1.0], [0.7, 0.2, 1.1, 2], [0.75, 0.15, 0.22, 0.33], [0.3])
LARGE = ([3, 1, 9, 0, 6, 20, 37, 10], [7, 2, 11, 2], [75, 15, 22, 33], [3])


def _tiny_network(ctx) -> InferenceNetwork:
    return InferenceNetwork(ctx, 2, [FullyConnected(4, "tanh"), FullyConnected(1, "sigmoid")], dtype=np.float32)


def _set_article_weights(net: InferenceNetwork, weights, bias, out_weights, out_bias) -> None:
    net.layers[0].weights.set(np.array(weights, np.float32).reshape(2, 4).T.copy())
    net.layers[0].bias.set(np.array(bias, np.float32))
    net.layers[1].weights.set(np.array([out_weights], np.float32))
    net.layers[1].bias.set(np.array(out_bias, np.float32))


def _train_and_show(title: str, net: InferenceNetwork, article: str) -> None:
    started = time.perf_counter()
    cost = sgd(TrainingNetwork(net, X), Y, "quadratic", epochs=2000, learning_rate=0.05)
    seconds = time.perf_counter() - started
    out = net(X).get().ravel()
    print(f"  {title:<44} -> {out[0]:.2f} {out[1]:.2f}   (article: {article}; cost {cost:.2g}, "
          f"2000 epochs in {seconds:.2f} s)")


def load_example(name: str):
    """examples/<name>.py as a module: inside the installed package, or beside it in a checkout."""
    package = Path(__file__).resolve().parent.parent  # clnet/
    for folder in (package / "examples", package.parent / "examples"):
        path = folder / f"{name}.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location(f"clnet_example_{name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f"example {name!r} not found in or next to {package}")


def _digits(ctx) -> None:
    print("\nHandwritten digits (scikit-learn's 8x8 images): 64 -> 128 relu -> 10 softmax, cross-entropy, Adam:")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("  skipped: needs scikit-learn (pip install 'clnet[examples]')")
        return
    result = load_example("digits").run(ctx, progress=False)
    print(f"  test accuracy {result['accuracy']:.3f} on {result['test']} images "
          f"(train {result['train_accuracy']:.3f}), {result['epochs']} epochs in {result['seconds']:.1f} s")
    print("\nThe same digits as 1x8x8 images: a small CNN (conv 16 3x3, batch norm, relu, max pool, conv 32 3x3, "
          "batch norm, relu, global average pool, 10 softmax), Adam with a cosine schedule:")
    result = load_example("cnn_digits").run(ctx, progress=False)
    print(f"  test accuracy {result['accuracy']:.3f} on {result['test']} images "
          f"(train {result['train_accuracy']:.3f}), {result['epochs']} epochs in {result['seconds']:.1f} s")


def _finetune(ctx) -> None:
    print("\nFine-tuning an imported classifier: torchvision's resnet18 (random weights) through ONNX, a new "
          "10-class head, the body frozen, on the digits as 3x32x32 images:")
    try:
        import onnxruntime  # noqa: F401
        import sklearn  # noqa: F401

        from .torchvision_models import load_torchvision
        load_torchvision()
    except ImportError as exc:
        print(f"  skipped: needs PyTorch, torchvision, onnxruntime and scikit-learn (make test installs them): {exc}")
        return
    result = load_example("finetune").run(ctx, progress=False)
    print(f"  test accuracy {result['accuracy']:.3f} on {result['test']} images, chance {result['chance']:.2f} "
          f"(+{result['accuracy'] - result['chance']:.2f}), {result['epochs']} epochs in {result['seconds']:.1f} s; "
          f"the body's weights bit-identical: {result['frozen']}; onnxruntime runs the export alike: "
          f"{result['onnxruntime']}")


def _char_gpt(ctx) -> None:
    print("\nA character-level GPT (4 layers, 4 heads, 128 dimensions, context 64) trained with AdamW on Python's "
          "standard library, then sampling from it:")
    result = load_example("char_gpt").run(ctx, progress=True)
    met = "met" if result["losses"][-1] < result["goal"] else "NOT met"
    print(f"  {result['steps']} steps ({result['tokens']:,} characters) in {result['seconds']:.1f} s; loss "
          f"{result['losses'][0]:.3f} -> {result['losses'][-1]:.3f}, goal below {result['goal']}: {met}; a sample "
          "(temperature 0.8, top 10):")
    print("\n".join("    " + line for line in result["text"].splitlines()[:8]))


def run_demo(spec: str | None = None) -> int:
    """Print the device table, say which device was chosen and why, and run the examples."""
    infos = devices()
    with Context(spec) as ctx:
        print("OpenCL devices of this machine ('*' = chosen):")
        print(format_table(infos, chosen=ctx.info))
        print(f"\nChosen: {ctx.info.name} ({ctx.info.platform}): {ctx.reason}.")

        print("\nThe article's 2-4-1 network learning (0.3, 0.9) -> 0.5 by SGD, quadratic cost, rate 0.05:")
        net = _tiny_network(ctx)
        _set_article_weights(net, *SMALL)
        _train_and_show("small weights", net, "0.50 0.50")
        _set_article_weights(net, *LARGE)
        _train_and_show("weights far above 1: saturated, stuck", net,
                        "0.00 0.00; the same saturation, on the sigmoid's other side")
        for method, article in (("uniform01", "0.02 0.02, often saturated"), ("gaussian", "0.01 0.01, often fails"),
                                ("xavier", "0.50 0.50")):
            init(net, method, seed=13)
            _train_and_show(f"clnet.init(net, {method!r}, seed=13)", net, article)
        _train_and_show("a new network: auto init, seed 0", _tiny_network(ctx), "-")

        print("\nThe article's large network, 10000 -> 5000 tanh -> 1000 sigmoid -> 10 sigmoid (55.01 M weights):")
        big = InferenceNetwork(ctx, 10000, [FullyConnected(5000, "tanh"), FullyConnected(1000, "sigmoid"),
                                            FullyConnected(10, "sigmoid")], dtype=np.float32)
        ctx.finish()  # a new network starts initialized: that built the kernels for these shapes
        started = time.perf_counter()
        init(big, "xavier", seed=2)
        ctx.finish()
        print(f"  init with xavier on the device: {(time.perf_counter() - started) * 1e3:.0f} ms "
              "(article: 14.3 s with JVM random numbers, 209 ms with MKL's, on its GPU)")
        batch = 10000 if ctx.info.type == "GPU" else 1000
        x = np.random.default_rng(0).uniform(size=(batch, 10000)).astype(np.float32)
        training = TrainingNetwork(big, x)
        y = np.full((batch, 10), 0.33, np.float32)
        epochs = 10 if ctx.info.type == "GPU" else 3
        sgd(training, y, "quadratic", epochs=1, learning_rate=0.05)  # warm-up: CLBlast compiles
        started = time.perf_counter()
        cost = sgd(training, y, "quadratic", epochs=epochs, learning_rate=0.05)
        print(f"  {epochs} SGD epochs on a batch of {batch}: {time.perf_counter() - started:.2f} s, cost {cost:.4f} "
              "(article: 10 epochs in 2.3 s for a batch of 10000 on its GPU)")
        del big, training
        _digits(ctx)
        _finetune(ctx)
        _char_gpt(ctx)
    return 0
