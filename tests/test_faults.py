"""What a fault trial found (issue 24), each against what a careful user expects: threads sharing
a context, divergence, device memory, files, resume, labels."""

import re
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


def test_one_network_trained_by_two_threads_at_once_is_refused(ctx):
    """A network's training buffers are its own: a second thread's fit is refused while the first
    trains, never interleaved; the first run's weights are those of the run alone."""
    x, labels = digits_like()
    started, release = threading.Event(), threading.Event()

    class Waiting(clnet.SGD):
        def step(self, params, grads, keep=None, **kwargs):
            started.set()
            release.wait(30)
            super().step(params, grads, keep, **kwargs)

    def fit(net, optimizer):
        return net.fit(x, labels, "cross_entropy", epochs=1, batch_size=48, optimizer=optimizer, seed=3,
                       progress=False)

    shared = small_net(ctx)
    first = threading.Thread(target=fit, args=(shared, Waiting(0.1)))
    first.start()
    try:
        assert started.wait(30)
        with pytest.raises(RuntimeError, match="fit: this network is being trained by another thread"):
            fit(shared, clnet.SGD(0.1))
        with pytest.raises(RuntimeError, match="sgd: this network is being trained by another thread"):
            clnet.sgd(clnet.TrainingNetwork(shared, x), np.eye(3)[labels])
    finally:
        release.set()
        first.join()
    alone = small_net(ctx)
    fit(alone, clnet.SGD(0.1))
    for name, value in alone.host_arrays().items():
        np.testing.assert_array_equal(shared.host_arrays()[name], value, err_msg=name)


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


# -- device memory ----------------------------------------------------------------------------------

@pytest.fixture
def small_device():
    """A context whose device claims 128 MB per buffer and 512 MB in all."""
    import dataclasses

    from .conftest import TEST_DEVICE

    with clnet.Context(TEST_DEVICE) as context:
        context.info = dataclasses.replace(context.info, max_alloc_bytes=128 * 2**20, global_mem_bytes=512 * 2**20)
        yield context


def test_clnet_keeps_a_running_total_of_what_it_holds_and_refuses_past_the_device(small_device):
    import gc

    ctx = small_device
    assert ctx.memory_in_use == 0
    layers = [clnet.FullyConnected(4000), clnet.FullyConnected(10)]  # 8.0 M float32 weights: 32 MB a buffer
    nets = [clnet.InferenceNetwork(ctx, 2000, layers, init=None) for _ in range(3)]
    one = nets[0].parameter_buffer.flat.nbytes
    assert ctx.memory_in_use == 3 * one
    training = clnet.TrainingNetwork(nets[0], np.zeros((1000, 2000), np.float32))  # gradients and buffers
    held = ctx.memory_in_use
    assert held > 4 * one
    big = [clnet.FullyConnected(12000), clnet.FullyConnected(10)]  # 24 M weights: 96 MB, below a buffer's 128
    clnet.InferenceNetwork(ctx, 2000, big, init=None)  # fits next to the rest, and is dropped at once
    gc.collect()
    assert ctx.memory_in_use == held
    keep = [clnet.InferenceNetwork(ctx, 2000, big, init=None) for _ in range(3)]  # about 460 MB in all now
    with pytest.raises(clnet.DeviceMemoryError, match=r"is in use by clnet .*ctx.memory_in_use"):
        clnet.InferenceNetwork(ctx, 2000, big, init=None)
    del keep, training, nets
    gc.collect()
    assert ctx.memory_in_use == 0


def test_inference_too_large_for_one_pass_runs_in_chunks(small_device):
    ctx = small_device
    rng = np.random.default_rng(3)
    net = clnet.InferenceNetwork(ctx, 3000, [clnet.FullyConnected(3000, "tanh"), clnet.FullyConnected(4, "softmax")])
    x = rng.normal(size=(12000, 3000)).astype(np.float32)  # 137 MB: more than one buffer may hold
    rows = net.inference_rows()
    assert rows < 12000
    whole = net(x).get()
    parts = np.concatenate([net(x[i:i + 2000]).get() for i in range(0, 12000, 2000)])
    np.testing.assert_allclose(whole, parts, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(net.predict(x), whole.argmax(axis=1))
    assert net.accuracy(x, whole.argmax(axis=1)) == 1.0
    wide = clnet.InferenceNetwork(ctx, 3, [clnet.FullyConnected(40000)], init=None)
    with pytest.raises(clnet.DeviceMemoryError, match=r"the output of 1,000 rows needs 152.6 MB in one buffer"):
        wide(np.zeros((1000, 3), np.float32))


# -- files, resume, labels --------------------------------------------------------------------------

def small_net(ctx):
    return clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(4, "tanh"), clnet.FullyConnected(3, "softmax")],
                                  dtype=np.float64, seed=2)


def dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_saves_temporary_file_is_removed_by_the_next_save(ctx, tmp_path):
    import os

    net = small_net(ctx)
    path = net.save(tmp_path / "model")
    stale = tmp_path / f".model.npz.{dead_pid()}.x8f2k1.tmp"  # what a save killed midway leaves
    stale.write_bytes(b"half a file")
    live = tmp_path / f".model.npz.{os.getppid()}.a1b2c3.tmp"  # a writer still at work: left alone
    live.write_bytes(b"being written")
    net.save(path)
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.npz", live.name])


def test_a_save_keeps_the_replaced_files_mode_and_a_new_one_follows_the_umask(ctx, tmp_path):
    import os

    net = small_net(ctx)
    path = tmp_path / "model.npz"
    path.write_bytes(b"an older file")
    os.chmod(path, 0o640)
    net.save(path)
    assert path.stat().st_mode & 0o777 == 0o640
    old = os.umask(0o022)
    try:
        assert net.save(tmp_path / "new.npz").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert net.save(tmp_path / "private.npz").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_load_takes_a_name_as_save_does_and_errors_name_the_target(ctx, tmp_path, monkeypatch):
    import tempfile

    from clnet.train import saving

    net = small_net(ctx)
    net.save(tmp_path / "model")
    loaded = clnet.load(tmp_path / "model", ctx)  # model.npz, as the save wrote it
    np.testing.assert_array_equal(loaded.parameters()[0].get(), net.parameters()[0].get())
    with pytest.raises(FileNotFoundError, match=r"no network file .*absent \(nor .*absent.npz"):
        clnet.load(tmp_path / "absent", ctx)

    def full_disk(file, **arrays):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saving.np, "savez", full_disk)
    with pytest.raises(OSError, match=f"cannot write {tmp_path / 'model.npz'}: No space left on device"):
        net.save(tmp_path / "model.npz")
    monkeypatch.undo()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".model.npz.123.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError, match=f"cannot write {tmp_path / 'model.npz'}: Permission denied"):
        net.save(tmp_path / "model.npz")


def test_ctrl_c_in_the_first_epoch_says_no_checkpoint_was_written_yet(ctx, tmp_path):
    import os
    import signal

    class CtrlC(clnet.SGD):
        def step(self, params, grads, keep=None, **kwargs):
            if self.steps == 1:
                os.kill(os.getpid(), signal.SIGINT)
            super().step(params, grads, keep, **kwargs)

    x, labels = digits_like()
    with pytest.raises(KeyboardInterrupt, match="after step 2 of 6; .*; no checkpoint was written yet") as err:
        small_net(ctx).fit(x, labels, "cross_entropy", epochs=3, optimizer=CtrlC(0.1), progress=False,
                           batch_size=8, checkpoint=tmp_path / "c.npz")
    assert "the last checkpoint is" not in str(err.value) and not (tmp_path / "c.npz").exists()


def test_resuming_a_finished_run_trains_nothing_and_says_so(ctx, tmp_path):
    x, labels = digits_like()
    xv, lv = digits_like(seed=5, samples=24)
    net = small_net(ctx)
    history = net.fit(x, labels, "cross_entropy", epochs=200, optimizer=clnet.SGD(2.0), seed=1, progress=False,
                      validation=(xv, lv), early_stopping=2, checkpoint=tmp_path / "c.npz")
    assert history.stopped_early
    again = small_net(ctx)
    with pytest.warns(UserWarning, match=r"holds a finished run \(it stopped early after epoch \d+\): nothing"):
        resumed = again.fit(x, labels, "cross_entropy", epochs=200, optimizer=clnet.SGD(2.0), seed=1,
                            progress=False, validation=(xv, lv), early_stopping=2, checkpoint=tmp_path / "c.npz",
                            resume=True)
    assert list(resumed) == list(history) and resumed.stopped_early
    for name, value in net.host_arrays().items():
        np.testing.assert_array_equal(again.host_arrays()[name], value, err_msg=name)


@pytest.mark.parametrize("changed, message", [
    ({"optimizer": clnet.SGD(0.1, momentum=0.5)}, r"made with momentum=0.9; this run has momentum=0.5"),
    ({"optimizer": clnet.SGD(0.2, momentum=0.9)}, r"made with learning_rate=0.1; this run has learning_rate=0.2"),
    ({"seed": 8}, r"made with seed=7; this run has seed=8"),
    ({"schedule": clnet.Exponential(0.1, 0.5)}, r"made with schedule=None; this run has schedule=Exponential"),
])
def test_a_resume_with_other_hyper_parameters_is_refused_naming_them(ctx, tmp_path, changed, message):
    x, labels = digits_like()
    run = {"optimizer": clnet.SGD(0.1, momentum=0.9), "seed": 7}
    small_net(ctx).fit(x, labels, "cross_entropy", epochs=1, progress=False, checkpoint=tmp_path / "c.npz", **run)
    with pytest.raises(ValueError, match=message):
        small_net(ctx).fit(x, labels, "cross_entropy", epochs=2, progress=False, checkpoint=tmp_path / "c.npz",
                           resume=True, **{**run, **changed})
    small_net(ctx).fit(x, labels, "cross_entropy", epochs=2, progress=False, checkpoint=tmp_path / "c.npz",
                       resume=True, optimizer=clnet.SGD(0.1, momentum=0.9))  # the seed of the checkpoint


def test_a_resume_with_another_dropout_rate_is_refused(ctx, tmp_path):
    x, labels = digits_like()

    def net(rate):
        return clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(4, "tanh", dropout=rate),
                                               clnet.FullyConnected(3, "softmax")], seed=2)

    net(0.3).fit(x, labels, "cross_entropy", epochs=1, progress=False, checkpoint=tmp_path / "c.npz")
    with pytest.raises(ValueError, match=r"holds another network .*dropout=0.3.* than this one .*dropout=0.5"):
        net(0.5).fit(x, labels, "cross_entropy", epochs=2, progress=False, checkpoint=tmp_path / "c.npz", resume=True)


def test_accuracy_refuses_labels_out_of_range(ctx):
    x, labels = digits_like()
    net = small_net(ctx)
    assert 0 <= net.accuracy(x, labels) <= 1 and net.accuracy(x, labels.astype(float)) == net.accuracy(x, labels)
    shown = re.escape(str(labels[:5] + 5))
    with pytest.raises(ValueError, match=r"labels must be class indices in 0..2 .*got " + shown):
        net.accuracy(x, labels + 5)
    with pytest.raises(ValueError, match="labels must be class indices"):
        net.accuracy(x, labels - 1)


WRITER = """
import sys
from clnet.runtime.device import DeviceInfo
from clnet.tuning import store
info = DeviceInfo(index="0:0", platform="p", name=sys.argv[1], vendor="v", type="CPU", compute_units=1, clock_mhz=1,
                  global_mem_bytes=1, local_mem_bytes=1, max_work_group_size=1, opencl_version="", driver_version="",
                  fp64=True, unified_memory=True, max_alloc_bytes=1, native_float_width=1, native_double_width=1)
for i in range(60):
    store.store(info, "float32", {"small": "clnet", "large": "clnet", "round": i})
"""


def test_processes_writing_the_tuning_file_at_once_never_share_a_temporary_file(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "CLNET_CACHE_DIR": str(tmp_path)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, f"device {i}"], env=env, stderr=subprocess.PIPE,
                                text=True) for i in range(3)]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert all(writer.returncode == 0 for writer in writers), errors
    content = json.loads((tmp_path / "tuning.json").read_text())
    assert content["format"] and not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
