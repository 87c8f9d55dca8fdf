"""What a fault trial found (issue 24), each against what a careful user expects: threads sharing
a context, divergence, device memory, files, resume, labels."""

import threading

import numpy as np
import pytest

import clnet


def digits_like(samples=48, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, samples)
    return rng.normal(size=(samples, 6)) + np.eye(3, 6)[labels] * 2, labels


# -- threads ---------------------------------------------------------------------------------------

def train(ctx, dropout: float, width: int = 16) -> dict:
    x, labels = digits_like()
    net = clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(width, "relu", dropout=dropout),
                                          clnet.FullyConnected(3, "softmax")], dtype=np.float64, seed=1)
    net.fit(x, labels, "cross_entropy", epochs=3, batch_size=8, seed=5, progress=False)
    return net.host_arrays()


def in_threads(ctx, runs: dict) -> dict:
    """Each run (a function of ctx) in a thread of its own, all at once; their results."""
    results, errors = {}, []

    def call(name, run):
        try:
            results[name] = run(ctx)
        except BaseException as exc:  # noqa: BLE001 (re-raised below, in the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=call, args=item) for item in runs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("runs", [
    {"dropout": lambda ctx: train(ctx, 0.3), "plain": lambda ctx: train(ctx, 0.0)},
    {"first": lambda ctx: train(ctx, 0.0), "second": lambda ctx: train(ctx, 0.0, width=16)},  # one shape
])
def test_threads_sharing_a_context_train_as_they_would_alone(ctx, runs):
    """Each thread's launches, recordings and scratch buffers are its own: the weights equal those
    of the same runs one after the other, bit for bit, round after round."""
    alone = {name: run(ctx) for name, run in runs.items()}
    for _ in range(6):
        together = in_threads(ctx, runs)
        for name, arrays in alone.items():
            for key, value in arrays.items():
                np.testing.assert_array_equal(together[name][key], value, err_msg=f"{name}: {key}")


# -- divergence -------------------------------------------------------------------------------------

def linear_net(ctx):
    return clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(8), clnet.FullyConnected(2)], dtype=np.float64,
                                  seed=5)


def train_linear(net, loop: str, x, y, epochs: int, rate: float):
    if loop == "fit":  # one batch an epoch, as sgd
        return net.fit(x, y, epochs=epochs, batch_size=len(x), optimizer=clnet.SGD(rate), shuffle=False,
                       progress=False)
    return clnet.sgd(clnet.TrainingNetwork(net, x), y, epochs=epochs, learning_rate=rate)


@pytest.mark.parametrize("loop", ["fit", "sgd"])
@pytest.mark.parametrize("rate", [1e30, 30.0])
def test_divergence_leaves_finite_weights_from_the_start_of_the_epoch_before(ctx, loop, rate):
    """The same rule for fit and sgd: the weights of the start of the last epoch whose cost was
    finite, which are finite, also when the weights themselves overflow (a rate of 1e30)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    net = linear_net(ctx)
    message = r"in epoch (\d+).*keeps its weights from the start of"
    with pytest.raises(clnet.TrainingDivergedError, match=message) as err:
        train_linear(net, loop, x, y, 500, rate)
    epoch = err.value.epoch
    weights = net.host_arrays()
    assert all(np.isfinite(w).all() for w in weights.values())
    reference = linear_net(ctx)
    if epoch > 2:
        train_linear(reference, loop, x, y, epoch - 2, rate)
    for name, value in reference.host_arrays().items():
        np.testing.assert_array_equal(weights[name], value, err_msg=name)
