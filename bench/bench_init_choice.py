"""Which initialization `init="auto"` should be: He, LeCun, Xavier and PyTorch's default compared
on scikit-learn's four small sets, five seeds each (issue 23).

    .venv/bin/python bench/bench_init_choice.py [--device SPEC] [--seeds 5] [--epochs 20] [--hidden relu]

Each set is split 75/25 once (random_state 0), the inputs standardized on the training part (and
diabetes' target too, as a user of MSE would); the network is inputs -> 64 relu -> 64 relu ->
output (softmax for wine and digits, one sigmoid for breast cancer, linear for diabetes;
--hidden tanh: tanh hidden layers), float32, Adam(1e-3), batches of 32, the same epochs and
shuffling seed for every method. The figure is the
test accuracy, or R² for diabetes, as mean (min..max) over the seeds; a seed draws the weights of
every method from the same Philox stream. Not a timing: the machine's load does not matter.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn import datasets
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import clnet

METHODS = ("he", "lecun", "xavier", "pytorch")
SETS = {"breast cancer": (datasets.load_breast_cancer, "sigmoid", 1), "wine": (datasets.load_wine, "softmax", 3),
        "digits": (datasets.load_digits, "softmax", 10), "diabetes": (datasets.load_diabetes, "linear", 1)}


def load(name: str):
    loader, output, outputs = SETS[name]
    x, y = loader(return_X_y=True)
    regression = output == "linear"
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0,
                                                        stratify=None if regression else y)
    scale = StandardScaler().fit(x_train)
    x_train, x_test = scale.transform(x_train), scale.transform(x_test)
    if regression:
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    return x_train, x_test, y_train, y_test, output, outputs


def score(ctx, data, method: str, seed: int, epochs: int, hidden: str) -> float:
    x_train, x_test, y_train, y_test, output, outputs = data
    net = clnet.InferenceNetwork(ctx, x_train.shape[1], [clnet.FullyConnected(64, hidden),
                                                         clnet.FullyConnected(64, hidden),
                                                         clnet.FullyConnected(outputs, output)])
    clnet.init(net, method, seed=seed)
    net.fit(x_train, y_train, epochs=epochs, batch_size=32, optimizer=clnet.Adam(1e-3), seed=seed, progress=False)
    if output == "linear":
        return float(r2_score(y_test, net.predict(x_test)))
    return float(np.mean(net.predict(x_test) == y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", default="relu", help="the hidden layers' activation")
    args = parser.parse_args()
    with clnet.Context(args.device) as ctx:
        print(f"device: {ctx.device.name}; {args.seeds} seeds, {args.epochs} epochs, hidden layers {args.hidden}")
        print("| set (figure) | " + " | ".join(METHODS) + " |")
        print("|---|" + "---|" * len(METHODS))
        means = {m: [] for m in METHODS}
        for name in SETS:
            data = load(name)
            cells = []
            for method in METHODS:
                found = [score(ctx, data, method, seed, args.epochs, args.hidden) for seed in range(args.seeds)]
                means[method].append(np.mean(found))
                cells.append(f"{np.mean(found):.3f} ({min(found):.3f}..{max(found):.3f})")
            print(f"| {name} ({'R²' if data[4] == 'linear' else 'accuracy'}) | " + " | ".join(cells) + " |")
        print("| mean of the four | " + " | ".join(f"{np.mean(means[m]):.3f}" for m in METHODS) + " |")


if __name__ == "__main__":
    main()
