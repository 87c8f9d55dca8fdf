"""What users would pick instead of clnet, for the same work: numpy and PyTorch on the CPU."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

RATE = 0.05
SEED_NETWORK = (10000, [(5000, "tanh"), (1000, "sigmoid"), (10, "sigmoid")])


def numpy_epoch(params, names, x, y) -> None:
    """One epoch of the benchmark networks in numpy: forward, backprop of the quadratic cost, SGD."""
    acts = {"tanh": np.tanh, "sigmoid": lambda z: 0.5 * (1 + np.tanh(0.5 * z))}
    slopes = {"tanh": lambda a: 1 - a * a, "sigmoid": lambda a: a * (1 - a)}
    outs = [x]
    for (w, b), name in zip(params, names):
        outs.append(acts[name](outs[-1] @ w.T + b))
    delta = (outs[-1] - y) * np.float32(1 / x.shape[0])
    for i in reversed(range(len(params))):
        w, b = params[i]
        delta *= slopes[names[i]](outs[i + 1])
        grad_w, grad_b = delta.T @ outs[i], delta.sum(axis=0)
        if i:
            delta = delta @ w
        w -= RATE * grad_w
        b -= RATE * grad_b


# issue 13's reference networks: inputs, layers, cost, optimizer, batch, samples per epoch
TRAINING_NETWORKS = {
    "mlp": (784, [(512, "tanh"), (10, "sigmoid")], "quadratic", "sgd", 256, 256),
    "seed": (10000, [(5000, "tanh"), (1000, "sigmoid"), (10, "sigmoid")], "quadratic", "sgd", 1000, 1000),
    "digits": (64, [(128, "relu"), (10, "softmax")], "cross_entropy", "adam", 32, 1440),
    "mnist": (784, [(256, "relu"), (128, "relu"), (10, "softmax")], "cross_entropy", "adam", 64, 2048),
}


def training_data(key: str) -> tuple[np.ndarray, np.ndarray]:
    """x and targets of a TRAINING_NETWORKS entry: targets 0.33 for the quadratic cost, class
    labels (integers) for cross-entropy."""
    inputs, layers, cost, _, _, samples = TRAINING_NETWORKS[key]
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(samples, inputs)).astype(np.float32)
    outputs = layers[-1][0]
    if cost == "quadratic":
        return x, np.full((samples, outputs), 0.33, np.float32)
    return x, rng.integers(0, outputs, samples)


def torch_training(key: str, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """One epoch of a TRAINING_NETWORKS entry in PyTorch: the same layers, cost, optimizer and
    batches (shuffled each epoch for the mini-batch networks; ImportError without torch)."""
    import torch

    inputs, layers, cost, optimizer, batch, samples = TRAINING_NETWORKS[key]
    kinds = {"tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}
    modules, width = [], inputs
    for outputs, name in layers:
        modules.append(torch.nn.Linear(width, outputs))
        if name != "softmax":  # CrossEntropyLoss takes the logits
            modules.append(kinds[name]())
        width = outputs
    model = torch.nn.Sequential(*modules)
    step = (torch.optim.SGD(model.parameters(), lr=RATE) if optimizer == "sgd"
            else torch.optim.Adam(model.parameters(), lr=1e-3))
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    loss = (torch.nn.CrossEntropyLoss() if cost == "cross_entropy"
            else lambda out, target: ((out - target) ** 2).sum() / (2 * out.shape[0]))
    order = np.random.default_rng(0)

    def epoch():
        rows = torch.from_numpy(order.permutation(samples)) if samples > batch else None
        for first in range(0, samples, batch):
            pick = slice(first, first + batch) if rows is None else rows[first:first + batch]
            step.zero_grad()
            loss(model(tx[pick]), ty[pick]).backward()
            step.step()

    return epoch


def has_numpy_reference(key: str) -> bool:
    """numpy_epoch covers the one-batch SGD networks with the quadratic cost (mlp, seed)."""
    _, _, cost, optimizer, batch, samples = TRAINING_NETWORKS[key]
    return cost == "quadratic" and optimizer == "sgd" and batch == samples


def numpy_xavier(shapes, rng) -> Callable[[], None]:
    weights = [np.empty(s, np.float32) for s in shapes]
    biases = [np.empty(s[0], np.float32) for s in shapes]

    def run():
        for w, b in zip(weights, biases):
            w[...] = rng.standard_normal(w.shape, dtype=np.float32)
            w *= np.float32(math.sqrt(2 / sum(w.shape)))
            b[...] = 0

    return run


def numpy_network(key: str, rng) -> Callable[[], None]:
    """One epoch of TRAINING_NETWORKS[key] in numpy (see has_numpy_reference)."""
    inputs, layers = TRAINING_NETWORKS[key][:2]
    x, y = training_data(key)
    widths = [inputs] + [o for o, _ in layers]
    params = [(rng.normal(scale=math.sqrt(2 / (i + o)), size=(o, i)).astype(np.float32), np.zeros(o, np.float32))
              for i, o in zip(widths, widths[1:])]
    return lambda: numpy_epoch(params, [a for _, a in layers], x, y)


def torch_xavier() -> Callable[[], None]:
    import torch

    widths = [SEED_NETWORK[0]] + [o for o, _ in SEED_NETWORK[1]]
    linears = [torch.nn.Linear(i, o) for i, o in zip(widths, widths[1:])]

    def run():
        with torch.no_grad():
            for layer in linears:
                torch.nn.init.xavier_normal_(layer.weight)
                torch.nn.init.zeros_(layer.bias)

    return run
