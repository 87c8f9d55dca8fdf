"""Training that loses nothing: atomic saves, checkpoints and resume (after SIGKILL too), Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import clnet
from clnet.train import saving

from .conftest import TEST_DEVICE


def make_data(samples=40, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(samples, 4)), rng.integers(0, 3, samples)


def make_net(ctx, dtype=np.float64):
    return clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(6, "tanh"), clnet.FullyConnected(3, "softmax")],
                                  dtype=dtype, seed=11)


def params(net):
    return [p.get() for p in net.parameters()]


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


# -- saving --------------------------------------------------------------------------------------

def test_save_paths_follow_an_explicit_rule(ctx, tmp_path):
    net = make_net(ctx)
    assert net.save(tmp_path / "model") == tmp_path / "model.npz"
    assert net.save(tmp_path / "model.weights") == tmp_path / "model.weights"
    assert same(params(clnet.load(tmp_path / "model.weights", ctx)), params(net))
    with pytest.raises(IsADirectoryError, match="is a folder"):
        net.save(tmp_path)
    (tmp_path / "models.npz").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        net.save(tmp_path / "models")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        net.save(tmp_path / "missing" / "model.npz")
    assert not (tmp_path / "missing").exists()


def test_a_save_that_fails_halfway_leaves_the_previous_file_whole(ctx, tmp_path, monkeypatch):
    net = make_net(ctx)
    path = net.save(tmp_path / "model.npz")
    before = path.read_bytes()

    def half_then_full_disk(file, **arrays):
        file.write(b"PK\x03\x04 half a zip archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saving.np, "savez", half_then_full_disk)
    for p in net.parameters():
        p.fill(7.0)
    with pytest.raises(OSError, match="No space left"):
        net.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]  # no temporary left behind
    loaded = clnet.load(path, ctx)
    assert not np.any(loaded.parameters()[0].get() == 7.0)


# -- checkpoints ---------------------------------------------------------------------------------

def test_resume_continues_exactly_where_a_run_stopped(ctx, tmp_path):
    x, labels = make_data()
    whole = make_net(ctx)
    history = whole.fit(x, labels, "cross_entropy", epochs=5, batch_size=8, optimizer=clnet.Adam(0.01), seed=2,
                        progress=False)
    first = make_net(ctx)
    first.fit(x, labels, "cross_entropy", epochs=2, batch_size=8, optimizer=clnet.Adam(0.01), seed=2,
              progress=False, checkpoint=tmp_path / "run")
    resumed = make_net(ctx)  # a new process would start here: fresh network, fresh optimizer
    resumed_history = resumed.fit(x, labels, "cross_entropy", epochs=5, batch_size=8, optimizer=clnet.Adam(0.01),
                                  seed=2, progress=False, checkpoint=tmp_path / "run", resume=True)
    assert resumed_history == history
    assert same(params(resumed), params(whole))
    assert same(params(clnet.load(tmp_path / "run.npz", ctx)), params(whole))  # load reads the network alone


def test_resume_without_a_checkpoint_starts_afresh_and_every_n_epochs(ctx, tmp_path):
    x, labels = make_data()
    a, b = make_net(ctx), make_net(ctx)
    ha = a.fit(x, labels, "cross_entropy", epochs=3, optimizer=clnet.SGD(0.1), seed=1, progress=False)
    hb = b.fit(x, labels, "cross_entropy", epochs=3, optimizer=clnet.SGD(0.1), seed=1, progress=False,
               checkpoint=tmp_path / "c.npz", resume=True, checkpoint_every=2)
    assert ha == hb and same(params(a), params(b))
    assert (tmp_path / "c.npz").exists()  # written at epoch 2 and after the last, 3
    c = make_net(ctx)
    assert c.fit(x, labels, "cross_entropy", epochs=3, optimizer=clnet.SGD(0.1), seed=1, progress=False,
                 checkpoint=tmp_path / "c.npz", resume=True) == ha  # nothing left to run
    assert same(params(c), params(a))


def test_resume_refuses_another_run(ctx, tmp_path):
    x, labels = make_data()
    make_net(ctx).fit(x, labels, "cross_entropy", epochs=1, optimizer=clnet.Adam(), progress=False,
                      checkpoint=tmp_path / "c.npz")
    net = make_net(ctx)
    with pytest.raises(ValueError, match="made with Adam; resume it with clnet.Adam, not SGD"):
        net.fit(x, labels, "cross_entropy", epochs=2, optimizer=clnet.SGD(0.1), progress=False,
                checkpoint=tmp_path / "c.npz", resume=True)
    with pytest.raises(ValueError, match="same data size, batch_size and cost"):
        net.fit(x, labels, "cross_entropy", epochs=2, batch_size=5, progress=False, checkpoint=tmp_path / "c.npz",
                resume=True)
    other = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(3, "softmax")], dtype=np.float64)
    with pytest.raises(ValueError, match="holds another network"):
        other.fit(x, labels, "cross_entropy", epochs=2, progress=False, checkpoint=tmp_path / "c.npz", resume=True)
    net.save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="not a checkpoint of fit"):
        net.fit(x, labels, "cross_entropy", epochs=2, progress=False, checkpoint=tmp_path / "plain.npz", resume=True)
    with pytest.raises(ValueError, match="resume=True needs the checkpoint file"):
        net.fit(x, labels, "cross_entropy", epochs=2, progress=False, resume=True)
    with pytest.raises(IsADirectoryError):
        net.fit(x, labels, "cross_entropy", epochs=2, progress=False, checkpoint=tmp_path)


KILLED_RUN = textwrap.dedent("""\
    import os, signal, sys
    import numpy as np, clnet

    class KilledMidEpoch(clnet.Adam):
        def step(self, params, grads, keep=None):
            super().step(params, grads, keep)
            if self.steps == 18:  # epoch 4 of 5 steps each, third step
                params.ctx.finish()
                os.kill(os.getpid(), signal.SIGKILL)

    rng = np.random.default_rng(3)
    x, labels = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)
    with clnet.Context(sys.argv[2]) as ctx:
        net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(6, "tanh"), clnet.FullyConnected(3, "softmax")],
                                     dtype=np.float64, seed=11)
        net.fit(x, labels, "cross_entropy", epochs=6, batch_size=8, optimizer=KilledMidEpoch(0.01), seed=2,
                progress=False, checkpoint=sys.argv[1], resume=True)
    """)


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_bit_for_bit(ctx, tmp_path):
    path = tmp_path / "killed.npz"
    result = subprocess.run([sys.executable, "-c", KILLED_RUN, str(path), TEST_DEVICE], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    entries = saving.Entries(path)
    assert entries.read("optimizer_state_0", entries.headers["optimizer_state_0"][0]).size > 0
    x, labels = make_data()
    resumed = make_net(ctx)
    history = resumed.fit(x, labels, "cross_entropy", epochs=6, batch_size=8, optimizer=clnet.Adam(0.01), seed=2,
                          progress=False, checkpoint=path, resume=True)
    whole = make_net(ctx)
    expected = whole.fit(x, labels, "cross_entropy", epochs=6, batch_size=8, optimizer=clnet.Adam(0.01), seed=2,
                         progress=False)
    assert history == expected
    assert same(params(resumed), params(whole))


# -- Ctrl-C -----------------------------------------------------------------------------------------

class CtrlCAt(clnet.SGD):
    """Presses Ctrl-C (SIGINT to this process) during step `at`."""

    def __init__(self, at):
        super().__init__(0.1)
        self.at = at

    def step(self, params, grads, keep=None):
        if self.steps + 1 == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        super().step(params, grads, keep)


def test_ctrl_c_ends_fit_after_the_current_step_and_keeps_the_last_checkpoint(ctx, tmp_path):
    x, labels = make_data()  # 40 samples in batches of 10: 4 steps per epoch
    handler = signal.getsignal(signal.SIGINT)
    net = make_net(ctx)
    with pytest.raises(KeyboardInterrupt, match="in epoch 2, after step 4 of 4"):
        net.fit(x, labels, "cross_entropy", epochs=5, batch_size=10, optimizer=CtrlCAt(8), seed=4, progress=False,
                checkpoint=tmp_path / "c.npz")
    assert signal.getsignal(signal.SIGINT) is handler
    two_epochs = make_net(ctx)
    two_epochs.fit(x, labels, "cross_entropy", epochs=2, batch_size=10, optimizer=clnet.SGD(0.1), seed=4,
                   progress=False)
    assert same(params(net), params(two_epochs))  # the 8th update whole, nothing after it
    one_epoch = make_net(ctx)
    one_epoch.fit(x, labels, "cross_entropy", epochs=1, batch_size=10, optimizer=clnet.SGD(0.1), seed=4,
                  progress=False)
    assert same(params(clnet.load(tmp_path / "c.npz", ctx)), params(one_epoch))  # epoch 1's checkpoint kept
    midway = make_net(ctx)
    with pytest.raises(KeyboardInterrupt, match="in epoch 1, after step 2 of 4"):
        midway.fit(x, labels, "cross_entropy", epochs=5, batch_size=10, optimizer=CtrlCAt(2), seed=4, progress=False)
