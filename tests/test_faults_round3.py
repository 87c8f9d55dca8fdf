"""What the third fault trial found (issue 33), each against what a careful user expects:
evaluate racing fit, divergence and batch norm's statistics, caches, scratch buffers, bad files.
(MPI ranks that end outside fit: tests/test_distributed.py.)"""

import sys
import threading

import numpy as np
import pytest

import clnet


def classes_data(samples=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, samples)
    return rng.normal(size=(samples, 6)) + np.eye(3, 6)[labels] * 2, labels


def mlp(ctx, seed=2):
    return clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(8, "tanh"), clnet.FullyConnected(3, "softmax")],
                                  dtype=np.float64, seed=seed)


@pytest.fixture
def switching_often():
    """Threads switch every microsecond (Python's default is 5 ms), as the trial ran them."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(saved)


# -- evaluate and fit on one network ---------------------------------------------------------------

def test_evaluate_while_fit_runs_waits_and_leaves_the_training_as_it_would_be(ctx, switching_often):
    """evaluate of 32 rows borrows the training network of 32 rows, fit's own buffers at batch 32:
    it waits for fit instead (on the old code the weights differed in every trial)."""
    x, labels = classes_data()

    def fit(net):
        net.fit(x, labels, "cross_entropy", epochs=6, batch_size=32, optimizer=clnet.SGD(0.1), seed=3,
                progress=False)

    alone = mlp(ctx)
    fit(alone)
    shared = mlp(ctx)
    trainer = threading.Thread(target=fit, args=(shared,))
    found = []
    trainer.start()
    while trainer.is_alive():
        found.append(shared.evaluate(x[:32], labels[:32]))
    trainer.join()
    for name, value in alone.host_arrays().items():
        np.testing.assert_array_equal(shared.host_arrays()[name], value, err_msg=name)
    assert found[-1] == alone.evaluate(x[:32], labels[:32])


def test_threads_evaluating_one_network_each_get_its_figures(ctx, switching_often):
    """Four threads evaluating one network at once (the old code: wrong accuracies in 49 of 50)."""
    x, labels = classes_data()
    net = mlp(ctx)
    net.fit(x, labels, "cross_entropy", epochs=3, batch_size=16, seed=1, progress=False)
    parts = [(x[i::4], labels[i::4]) for i in range(4)]  # 16 rows each: one training network for all
    expected = [net.evaluate(*part) for part in parts]
    for _ in range(5):
        found = [None] * 4

        def run(i, found=found):
            for _ in range(3):
                found[i] = net.evaluate(*parts[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert found == expected
