"""Convolutional networks through everything an MLP has (issue 21): fit on digits to 0.99 test
accuracy and bit for bit again, validation and early stopping, checkpoints resumed after a kill,
2 MPI ranks equal to one process, init with the convolution's fan-in, save and load, the
workspace checked against the device."""

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.app.demo import load_example

from . import reference as ref
from .conftest import TEST_DEVICE

ROOT = Path(__file__).resolve().parents[1]


def small_cnn(ctx, dtype=np.float64, seed=1, norm=True, conv_bias=True):
    """norm: True (batch norm), False, or "sync" (BatchNorm(sync=True))."""
    layers = [clnet.Conv2d(4, 3, padding=1, bias=conv_bias), *([clnet.BatchNorm(sync=norm == "sync")] if norm else []),
              clnet.Activation("relu"),
              clnet.MaxPool2d(2), clnet.Conv2d(6, 2, stride=1, activation="tanh"), clnet.AvgPool2d(2),
              clnet.Flatten(), clnet.FullyConnected(3, "softmax")]
    return clnet.InferenceNetwork(ctx, (2, 6, 6), layers, dtype=dtype, seed=seed)


def images(samples=40, seed=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, samples)
    x = rng.normal(size=(samples, 2, 6, 6)) * 0.5
    x[np.arange(samples), labels % 2, labels, :] += 1.5  # a bright row that tells the class
    return x, labels


def test_the_cnn_example_reaches_99_percent_on_digits_and_repeats_bit_for_bit(ctx):
    example = load_example("cnn_digits")
    first = example.run(ctx, progress=False)
    assert first["test"] == 360 and first["accuracy"] >= 0.99, first["accuracy"]
    again = example.run(ctx, progress=False)
    assert again["accuracy"] == first["accuracy"]
    assert all(np.array_equal(first["arrays"][k], again["arrays"][k]) for k in first["arrays"])


def test_a_cnn_fits_with_validation_and_early_stopping_and_saves(ctx, tmp_path):
    x, labels = images()
    net = small_cnn(ctx)
    history = net.fit(x[:32], labels[:32], "cross_entropy", epochs=40, batch_size=8, optimizer=clnet.Adam(0.02),
                      seed=0, progress=False, validation=(x[32:], labels[32:]), early_stopping=5)
    assert history[-1] < 0.5 * history[0] and len(history.validation_accuracy) == len(history)
    assert net.accuracy(x, labels) > 0.8
    loaded = clnet.load(net.save(tmp_path / "cnn"), ctx)
    assert loaded.specs == net.specs
    np.testing.assert_array_equal(loaded(x).get(), net(x).get())  # running statistics included
    running_var = net.layers[1].arrays["running_var"].get()
    np.testing.assert_array_equal(loaded.layers[1].arrays["running_var"].get(), running_var)
    assert not np.array_equal(running_var, np.ones(4))


def test_init_draws_convolutions_with_their_fan_in(ctx, dtype):
    net = clnet.InferenceNetwork(ctx, (3, 8, 8), [clnet.Conv2d(8, 3, activation="relu"), clnet.Flatten(),
                                                  clnet.FullyConnected(2)], dtype=dtype, init="he", seed=5)
    std = dtype.type(np.sqrt(2 / (3 * 9)))  # He: fan_in = in_channels * kh * kw
    np.testing.assert_array_equal(net.layers[0].weights.get().ravel(), ref.normal_exact(5, 0, 8 * 27, dtype, std=std))
    assert not net.layers[0].bias.get().any()


KILLED_RUN = textwrap.dedent("""\
    import os, signal, sys
    sys.path.insert(0, sys.argv[3])
    import numpy as np, clnet
    from tests.test_cnn import images, small_cnn

    class KilledMidEpoch(clnet.Adam):
        def step(self, params, grads, keep=None):
            super().step(params, grads, keep)
            if self.steps == 13:  # epoch 3 of 5 steps each, third step
                params.ctx.finish()
                os.kill(os.getpid(), signal.SIGKILL)

    x, labels = images()
    with clnet.Context(sys.argv[2]) as ctx:
        small_cnn(ctx).fit(x, labels, "cross_entropy", epochs=5, batch_size=8, optimizer=KilledMidEpoch(0.01),
                           seed=2, progress=False, checkpoint=sys.argv[1], resume=True)
    """)


def test_a_killed_cnn_run_resumes_to_the_same_weights_and_statistics(ctx, tmp_path):
    path = tmp_path / "killed.npz"
    result = subprocess.run([sys.executable, "-c", KILLED_RUN, str(path), TEST_DEVICE, str(ROOT)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    x, labels = images()
    runs = []
    for checkpoint in (path, None):
        net = small_cnn(ctx)
        history = net.fit(x, labels, "cross_entropy", epochs=5, batch_size=8, optimizer=clnet.Adam(0.01), seed=2,
                          progress=False, checkpoint=checkpoint, resume=checkpoint is not None)
        runs.append((history, net.host_arrays()))
    (resumed, arrays), (whole, expected) = runs
    assert resumed == whole
    assert all(np.array_equal(arrays[k], expected[k]) for k in expected)


MPIEXEC = Path(sys.executable).with_name("mpiexec")
RANKS_RUN = textwrap.dedent("""\
    import sys
    sys.path.insert(0, sys.argv[3])
    import numpy as np, clnet
    from tests.test_cnn import images, small_cnn

    world = clnet.distributed.World()
    x, labels = images(45, seed=7)
    norm = {"norm": True, "plain": False, "sync": "sync"}[sys.argv[4]]
    with world.context(sys.argv[2]) as ctx:
        net = small_cnn(ctx, seed=1 + world.rank, norm=norm, conv_bias=norm != "sync")
        history = net.fit(x, labels, "cross_entropy", epochs=3, batch_size=16, optimizer=clnet.Adam(0.01), seed=3,
                          progress=False, world=world)
        if world.rank == 0 or norm:
            np.savez(sys.argv[1] + f".{world.rank}.npz", history=np.array(history), **net.host_arrays())
    """)


def run_ranks(tmp_path, norm: bool | str) -> Path:
    out = tmp_path / "ranks"
    env = {**os.environ, "POCL_MAX_PTHREAD_COUNT": "1"}
    result = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-c", RANKS_RUN, str(out), TEST_DEVICE,
                             str(ROOT), {True: "norm", False: "plain", "sync": "sync"}[norm]], capture_output=True,
                            text=True, timeout=180,
                            env=env)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec is not in the venv: pip install 'clnet[mpi]'")
def test_a_cnn_trains_on_two_ranks_as_one_process(ctx, tmp_path):
    out = run_ranks(tmp_path, norm=False)
    x, labels = images(45, seed=7)
    net = small_cnn(ctx, norm=False)
    history = net.fit(x, labels, "cross_entropy", epochs=3, batch_size=16, optimizer=clnet.Adam(0.01), seed=3,
                      progress=False)
    saved = np.load(f"{out}.0.npz")
    np.testing.assert_allclose(saved["history"], history, rtol=1e-10)
    for name, value in net.host_arrays().items():
        np.testing.assert_allclose(saved[name], value, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec is not in the venv: pip install 'clnet[mpi]'")
def test_ranks_with_batch_norm_end_with_one_network(tmp_path):
    """Each rank normalizes its own part of the batch; the running statistics are averaged after
    every epoch, so both ranks hold the same network, statistics included."""
    out = run_ranks(tmp_path, norm=True)
    first, second = np.load(f"{out}.0.npz"), np.load(f"{out}.1.npz")
    assert "layer_1.running_var" in first.files
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec is not in the venv: pip install 'clnet[mpi]'")
def test_ranks_with_synchronized_batch_norm_train_as_one_process(ctx, tmp_path):
    """BatchNorm(sync=True): the statistics of the whole step's batch over both ranks, as
    PyTorch's SyncBatchNorm, so that training equals one process's (issue 33: per-rank statistics
    left the weights 0.06 away)."""
    out = run_ranks(tmp_path, norm="sync")
    x, labels = images(45, seed=7)
    net = small_cnn(ctx, norm=True, conv_bias=False)  # in one process sync changes nothing
    history = net.fit(x, labels, "cross_entropy", epochs=3, batch_size=16, optimizer=clnet.Adam(0.01), seed=3,
                      progress=False)
    for rank in (0, 1):
        saved = np.load(f"{out}.{rank}.npz")
        np.testing.assert_allclose(saved["history"], history, rtol=1e-10)
        # no bias before batch norm (as PyTorch's ResNets): its gradient is exactly 0 in exact
        # arithmetic, and Adam scales the rounding noise that is all there is to 1e-10
        for name, value in net.host_arrays().items():  # running statistics included
            np.testing.assert_allclose(saved[name], value, rtol=1e-10, atol=1e-12, err_msg=f"rank {rank}: {name}")


def test_a_convolution_too_big_for_the_device_names_the_layer_and_the_batch(ctx):
    with clnet.Context(TEST_DEVICE) as tiny:  # OpenCL's least per buffer, 128 MB; 300 MB in all
        tiny.info = dataclasses.replace(tiny.info, max_alloc_bytes=128 * 2**20, global_mem_bytes=300 * 2**20)
        net = clnet.InferenceNetwork(tiny, (3, 64, 64), [clnet.Conv2d(32, 3, padding=1), clnet.Flatten(),
                                                         clnet.FullyConnected(2)])
        with pytest.raises(clnet.DeviceMemoryError, match=r"training on batches of 300 needs .* \(layer 0's "
                                                          r"outputs \(300 x 32 x 64 x 64\)\).*use a smaller "
                                                          r"batch_size"):
            clnet.TrainingNetwork(net, cla.empty(tiny.queue, (300, 3, 64, 64), np.float32))
        # outputs and deltas of 120 MB each and a workspace of 64 MB: below 128 a buffer, above 300 in all
        with pytest.raises(clnet.DeviceMemoryError, match=r"training on batches of 240 needs .* in all"):
            clnet.TrainingNetwork(net, cla.empty(tiny.queue, (240, 3, 64, 64), np.float32))
