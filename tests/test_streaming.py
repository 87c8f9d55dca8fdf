"""Data bigger than memory (issue 35): fit, evaluate and predict on an np.memmap equal the same on
arrays; an iterable of batches (a list, a generator, a PyTorch DataLoader) gives the weights of
the same batches as arrays; a memmap trains with the process's own memory far below its size."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import clnet

from .conftest import TEST_DEVICE


def _data(tmp_path, rows=50):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(rows, 1, 6, 6)).astype(np.float32)
    labels = (x[:, 0, :3].sum(axis=(1, 2)) > 0).astype(int)
    file = np.memmap(tmp_path / "x.dat", np.float32, "w+", shape=x.shape)
    file[:] = x
    file.flush()
    return x, labels, np.memmap(tmp_path / "x.dat", np.float32, "r", shape=x.shape)


def _net(ctx, dropout=0.0):
    return clnet.InferenceNetwork(ctx, (1, 6, 6), [clnet.Conv2d(3, 3, activation="relu"), clnet.Flatten(),
                                                  clnet.FullyConnected(6, "tanh", dropout=dropout),
                                                  clnet.FullyConnected(2, "softmax")], seed=4)


def test_fit_evaluate_and_predict_on_a_memmap_equal_arrays(ctx, tmp_path):
    x, labels, file = _data(tmp_path)
    nets = [_net(ctx, dropout=0.2) for _ in range(2)]
    histories = [net.fit(data, labels, epochs=3, batch_size=8, seed=5, progress=False,
                         validation=(data[40:], labels[40:])) for net, data in zip(nets, (x, file))]
    assert list(histories[0]) == list(histories[1])
    assert histories[0].validation_cost == histories[1].validation_cost
    for a, b in zip(*(net.get_weights() for net in nets)):
        np.testing.assert_array_equal(a, b)
    assert nets[1].evaluate(file, labels) == nets[0].evaluate(x, labels)
    np.testing.assert_array_equal(nets[1].predict_proba(file, batch_size=7), nets[0].predict_proba(x))


def test_an_iterable_of_batches_gives_the_weights_of_the_same_batches_as_arrays(ctx, tmp_path):
    x, labels, _ = _data(tmp_path)
    batches = [(x[i:i + 8], labels[i:i + 8]) for i in range(0, 50, 8)]
    nets = [_net(ctx) for _ in range(3)]
    expected = nets[0].fit(x, labels, "cross_entropy", epochs=2, batch_size=8, shuffle=False, progress=False)
    found = nets[1].fit(batches, cost="cross_entropy", epochs=2, progress=False)
    np.testing.assert_allclose(found, expected, rtol=1e-6)
    torch = pytest.importorskip("torch")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(labels)),
                                         batch_size=8)
    nets[2].fit(loader, cost="cross_entropy", epochs=2, progress=False)
    for net in nets[1:]:
        for a, b in zip(net.get_weights(), nets[0].get_weights()):
            np.testing.assert_array_equal(a, b)
    figures = nets[1].evaluate(batches)
    assert figures["cost"] == pytest.approx(nets[1].evaluate(x, labels)["cost"], rel=1e-6)
    assert figures["accuracy"] == nets[1].evaluate(x, labels)["accuracy"]
    np.testing.assert_allclose(nets[1].predict_proba(loader), nets[1].predict_proba(x), rtol=1e-6)


def test_batches_with_weights_and_a_regression_evaluated_by_parts(ctx):
    rng = np.random.default_rng(2)
    x, y, w = rng.normal(size=(30, 4)), rng.normal(size=(30, 2)) + 100, rng.uniform(0.5, 2, 30)
    nets = [clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(2, "linear")], dtype=np.float64, seed=1)
            for _ in range(2)]
    sgd = clnet.SGD(0.01)  # no state: two calls of one epoch are one of two
    nets[0].fit(x, y, "mse", epochs=2, batch_size=10, shuffle=False, progress=False, sample_weight=w, optimizer=sgd)
    nets[1].fit(((x[i:i + 10], y[i:i + 10], w[i:i + 10]) for i in range(0, 30, 10)), cost="mse", progress=False,
                optimizer=sgd)
    nets[1].fit([(x[i:i + 10], y[i:i + 10], w[i:i + 10]) for i in range(0, 30, 10)], cost="mse", progress=False,
                optimizer=sgd)
    for a, b in zip(*(net.get_weights() for net in nets)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)  # the second epoch's history in a second call
    whole = nets[0].evaluate(x, y, "mse")
    parts = nets[0].evaluate([(x[i:i + 7], y[i:i + 7]) for i in range(0, 30, 7)], cost="mse")
    assert set(whole) == set(parts) == {"cost", "mse", "mae", "r2"}
    for key in whole:
        assert parts[key] == pytest.approx(whole[key], rel=1e-10), key  # r2 of targets near 100: no cancellation


def test_what_an_iterable_of_batches_cannot_take_is_refused(ctx, tmp_path):
    x, labels, _ = _data(tmp_path, 16)
    net = _net(ctx)
    once = ((x[i:i + 8], labels[i:i + 8]) for i in range(0, 16, 8))
    with pytest.raises(ValueError, match="gave none in epoch 2 again: a generator is read once"):
        net.fit(once, cost="cross_entropy", epochs=2, progress=False)
    batches = [(x[:8], labels[:8])]
    with pytest.raises(ValueError, match="fit on an iterable of batches takes no checkpoint, sample_weight"):
        net.fit(batches, cost="cross_entropy", progress=False, checkpoint=tmp_path / "c", sample_weight=np.ones(8))
    with pytest.raises(ValueError, match="fit on an iterable of batches needs cost="):
        clnet.InferenceNetwork(ctx, (1, 6, 6), [clnet.Flatten(), clnet.FullyConnected(1, "linear")]).fit(
            batches, progress=False)
    with pytest.raises(TypeError, match=r"each batch must be \(x, y\) or \(x, y, sample_weight\), got ndarray"):
        net.fit([x[:8]], cost="cross_entropy", progress=False)
    with pytest.raises(TypeError, match="fit needs targets y beside x"):
        net.fit(x, progress=False)
    with pytest.raises(ValueError, match=r"x \(an np.memmap\) must hold real numbers of shape \(samples, 1, 6, 6\)"):
        net.fit(np.memmap(tmp_path / "bad.dat", np.float32, "w+", shape=(16, 36)), labels, progress=False)


MEMORY_RUN = textwrap.dedent("""\
    import sys, numpy as np, clnet

    def anonymous():  # the process's own memory, not the file's pages that the kernel caches
        return int(next(line for line in open("/proc/self/status") if line.startswith("RssAnon")).split()[1]) * 1024

    rows = int(sys.argv[3])
    x = np.memmap(sys.argv[1], np.float32, "r", shape=(rows, 1, 64, 64))
    labels = (np.arange(rows) % 2).astype(int)
    with clnet.Context(sys.argv[2]) as ctx:
        net = clnet.InferenceNetwork(ctx, (1, 64, 64), [clnet.Conv2d(2, 4, stride=4, activation="relu"),
                                     clnet.GlobalAvgPool2d(), clnet.Flatten(), clnet.FullyConnected(2, "softmax")],
                                     seed=1)
        net.fit(x[:64], labels[:64], epochs=1, batch_size=32, progress=False)  # kernels built, buffers made
        before = anonymous()
        net.fit(x, labels, epochs=1, batch_size=32, progress=False)
        print(anonymous() - before)
    """)


def test_a_memmap_trains_with_the_process_memory_far_below_its_size(tmp_path):
    rows = 3072  # 48 MiB of 64 x 64 images
    file = np.memmap(tmp_path / "big.dat", np.float32, "w+", shape=(rows, 1, 64, 64))
    file[:] = np.random.default_rng(0).normal(size=(1, 1, 64, 64)).astype(np.float32)
    file.flush()
    del file
    result = subprocess.run([sys.executable, "-c", MEMORY_RUN, str(tmp_path / "big.dat"), TEST_DEVICE, str(rows)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    grown = int(result.stdout.split()[-1])
    assert grown < rows * 64 * 64 * 4 / 4, grown  # 3 MiB here; arrays took 105 MiB (the data twice: host, device)
