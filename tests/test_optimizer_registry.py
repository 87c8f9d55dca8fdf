"""Optimizers as a registry (issue 35): RMSprop and AdamW equal to PyTorch's, clipping by global
norm equal to torch.nn.utils.clip_grad_norm_, and an optimizer defined and registered here only
that trains, checkpoints and resumes bit for bit."""

import numpy as np
import pytest
import torch

import clnet
from clnet.ops import updates
from clnet.train import checkpoints

SHAPES = [(3, 4), (3,), (2, 3), (2,)]


def _net(ctx, dtype=np.float64):
    return clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(3, "tanh"), clnet.FullyConnected(2, "linear")],
                                  dtype=dtype, seed=5)


def _against_torch(ctx, ours, theirs_class, theirs_args, steps=5, clip=None):
    """Step clnet's optimizer and torch's on the same parameters and random gradients; the max
    difference of the parameters after `steps` steps."""
    net = _net(ctx)
    rng = np.random.default_rng(7)
    tensors = [torch.tensor(p.get(), requires_grad=True) for p in net.parameters()]
    theirs = theirs_class(tensors, **theirs_args)
    for _ in range(steps):
        grads = [rng.normal(size=t.shape) * 3 for t in tensors]
        for view, g in zip(net.gradient_buffer.views, grads):  # the padding between them stays 0
            view.set(g)
        ours.step(net.parameter_buffer, net.gradient_buffer)
        for t, g in zip(tensors, grads):
            t.grad = torch.tensor(g)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(tensors, clip)
        theirs.step()
    return max(float(np.abs(p.get() - t.detach().numpy()).max()) for p, t in zip(net.parameters(), tensors))


@pytest.mark.parametrize("args", [{}, {"weight_decay": 0.1}, {"centered": True}, {"momentum": 0.9},
                                  {"centered": True, "momentum": 0.5, "weight_decay": 0.01, "alpha": 0.9}])
def test_rmsprop_equals_pytorch_over_five_steps(ctx, args):
    if not ctx.info.fp64:
        pytest.skip("float64 needed")
    assert _against_torch(ctx, clnet.RMSprop(0.01, **args), torch.optim.RMSprop, {"lr": 0.01, **args}) < 1e-10


def test_adamw_equals_pytorch_over_five_steps(ctx):
    if not ctx.info.fp64:
        pytest.skip("float64 needed")
    found = _against_torch(ctx, clnet.AdamW(0.01, weight_decay=0.1), torch.optim.AdamW,
                           {"lr": 0.01, "weight_decay": 0.1})
    assert found < 1e-10


@pytest.mark.parametrize("max_norm", [0.5, 1e3])  # clipped, and left alone
def test_clipping_equals_clip_grad_norm(ctx, max_norm):
    if not ctx.info.fp64:
        pytest.skip("float64 needed")
    found = _against_torch(ctx, clnet.SGD(0.1, momentum=0.9, clip_norm=max_norm), torch.optim.SGD,
                           {"lr": 0.1, "momentum": 0.9}, clip=max_norm)
    assert found < 1e-10
    rng = np.random.default_rng(3)  # and the scaling alone, on a buffer longer than a work-group's share
    g = rng.normal(size=70_001)
    device = clnet.ops.arrays.cla.to_device(ctx.queue, g)
    updates.clip_by_norm(ctx, device, max_norm)
    tensor = torch.tensor(g.copy())
    tensor.grad = torch.tensor(g.copy())
    torch.nn.utils.clip_grad_norm_([tensor], max_norm)
    np.testing.assert_allclose(device.get(), tensor.grad.numpy(), rtol=1e-12)


def test_clip_norm_must_be_positive():
    with pytest.raises(ValueError, match=r"clip_norm must be in \(0"):
        clnet.Adam(clip_norm=0)


@clnet.register_optimizer
class PlainDescent(clnet.Optimizer):
    """w -= learning_rate * g, under a name of its own: the test-file optimizer."""

    def __init__(self, learning_rate=0.05):
        super().__init__()
        self.learning_rate = learning_rate

    def update(self, ctx, w, g, state, kept):
        updates.sgd_step(ctx, w, g, self.rate(), kept=kept)


class Unregistered(clnet.Adam):
    """An Adam subclass with an update of its own: not an Adam, and not registered."""

    def update(self, ctx, w, g, state, kept):
        updates.sgd_step(ctx, w, g, self.rate(), kept=kept)


def _data():
    rng = np.random.default_rng(2)
    return rng.normal(size=(24, 4)), rng.normal(size=(24, 2))


def test_a_registered_optimizer_of_a_test_file_checkpoints_and_resumes_bit_for_bit(ctx, tmp_path):
    x, y = _data()
    path = tmp_path / "plain.npz"
    stopped = _net(ctx)
    stopped.fit(x, y, "mse", epochs=2, batch_size=8, optimizer=PlainDescent(0.05), seed=1, progress=False,
                checkpoint=path)
    found = checkpoints.saved_optimizer(path)
    assert type(found) is PlainDescent and found.learning_rate == 0.05
    resumed = _net(ctx)  # no optimizer given: the checkpoint's, found by its registered name
    history = resumed.fit(x, y, "mse", epochs=4, batch_size=8, seed=1, progress=False, checkpoint=path, resume=True)
    whole = _net(ctx)
    expected = whole.fit(x, y, "mse", epochs=4, batch_size=8, optimizer=PlainDescent(0.05), seed=1, progress=False)
    assert list(history) == list(expected)
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    sgd = _net(ctx)  # and plain SGD by hand gives the same weights: it really is w -= lr g
    sgd.fit(x, y, "mse", epochs=4, batch_size=8, optimizer=clnet.SGD(0.05), seed=1, progress=False)
    for a, b in zip(sgd.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_resume_without_an_optimizer_takes_the_checkpoints_own(ctx, tmp_path):
    x, y = _data()
    path = tmp_path / "rms.npz"
    _net(ctx).fit(x, y, "mse", epochs=1, batch_size=8, optimizer=clnet.RMSprop(0.01, momentum=0.5), seed=1,
                  progress=False, checkpoint=path)
    found = checkpoints.saved_optimizer(path)
    assert type(found) is clnet.RMSprop and found.settings() == clnet.RMSprop(0.01, momentum=0.5).settings()
    resumed = _net(ctx)
    resumed.fit(x, y, "mse", epochs=3, batch_size=8, seed=1, progress=False, checkpoint=path, resume=True)
    whole = _net(ctx)
    whole.fit(x, y, "mse", epochs=3, batch_size=8, optimizer=clnet.RMSprop(0.01, momentum=0.5), seed=1,
              progress=False)
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_an_unregistered_optimizer_trains_but_is_not_checkpointed_as_its_parent(ctx, tmp_path):
    x, y = _data()
    net = _net(ctx)
    net.fit(x, y, "mse", epochs=1, batch_size=8, optimizer=Unregistered(0.05), seed=1, progress=False)
    assert Unregistered().kind is None
    with pytest.raises(ValueError, match=r"Unregistered is not registered: call clnet.register_optimizer\("):
        net.fit(x, y, "mse", epochs=1, optimizer=Unregistered(), progress=False, checkpoint=tmp_path / "u.npz")
    assert not (tmp_path / "u.npz").exists()


def test_registry_refuses_what_is_not_an_optimizer_and_a_taken_name():
    with pytest.raises(TypeError, match="subclass of clnet.Optimizer"):
        clnet.register_optimizer(int)

    class Other(clnet.Optimizer):
        pass

    with pytest.raises(ValueError, match="the optimizer type name 'Adam' is taken"):
        clnet.register_optimizer(Other, "Adam")


def test_a_resume_names_what_it_cannot_make(ctx, tmp_path):
    x, y = _data()
    path = tmp_path / "scheduled.npz"
    _net(ctx).fit(x, y, "mse", epochs=1, batch_size=8, optimizer=clnet.SGD(clnet.Cosine(0.1, total_steps=9)),
                  seed=1, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="has a learning-rate schedule that is not recorded: pass the optimizer"):
        _net(ctx).fit(x, y, "mse", epochs=2, batch_size=8, seed=1, progress=False, checkpoint=path, resume=True)
    from clnet.train import optimizers

    with pytest.raises(ValueError, match="unknown optimizer 'Lion': register it with clnet.register_optimizer"):
        optimizers.from_record("Lion", {})
