"""What people expect of a training loop: learning-rate schedules, validation, early stopping,
dropout; each against a reference written out here or in tests/reference.py."""

import math

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.nn import FlatArrays
from clnet.ops import costs
from clnet.ops import dropout as dropout_op

from . import reference as ref

# -- schedules ---------------------------------------------------------------------------------

def test_schedule_formulas():
    step = clnet.StepDecay(0.1, every=3, gamma=0.5)
    assert [step(t) for t in range(7)] == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]
    exp = clnet.Exponential(0.2, gamma=0.9)
    assert [exp(t) for t in range(3)] == [0.2, 0.2 * 0.9, 0.2 * 0.9 ** 2]
    cos = clnet.Cosine(1.0, total_steps=10, warmup_steps=4, min_rate=0.1)
    assert [cos(t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    for t in range(4, 14):
        progress = min(1.0, (t - 4) / 6)
        assert cos(t) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)), abs=1e-15)
    assert cos(10) == pytest.approx(0.1) and cos(100) == pytest.approx(0.1)
    assert clnet.Constant(0.3)(1000) == 0.3
    for bad in (lambda: clnet.Cosine(1.0, 5, warmup_steps=5), lambda: clnet.StepDecay(0.1, every=0),
                lambda: clnet.Exponential(-1, 0.5), lambda: clnet.Cosine(0.1, 10, min_rate=0.2)):
        with pytest.raises(ValueError):
            bad()


def test_each_step_uses_the_scheduled_rate_without_another_launch(ctx):
    """SGD with gradient 1 everywhere: step t moves every weight by exactly -rate(t)."""
    schedule = clnet.Cosine(0.5, total_steps=6, warmup_steps=2)
    params, grads = FlatArrays(ctx, [(3, 2), (3,)], np.float64), FlatArrays(ctx, [(3, 2), (3,)], np.float64)
    for g in grads.views:
        g.fill(1.0)
    sgd = clnet.SGD(schedule)
    expected = params.views[0].get()
    for t in range(8):
        launches = ctx.launches
        sgd.step(params, grads)
        assert ctx.launches == launches + 1
        expected = expected - schedule(t) * (1.0 + 0.0 * expected)  # the kernel's w -= lr * (g + wd w)
        np.testing.assert_array_equal(params.views[0].get(), expected)
    adam, state = clnet.Adam(clnet.StepDecay(0.01, every=2, gamma=0.1)), {}
    w = rng_weights = np.random.default_rng(0).normal(size=(3, 2))
    params.views[0].set(rng_weights)
    for t in range(5):
        adam.step(params, grads)
        w = ref.adam_step(w, np.ones((3, 2)), state, adam.schedule(t), 0.9, 0.999, 1e-8)
    np.testing.assert_allclose(params.views[0].get(), w, rtol=1e-12)


def test_fit_takes_a_schedule_for_its_optimizer_and_leaves_the_optimizer_as_it_was(ctx):
    net = clnet.InferenceNetwork(ctx, 2, [clnet.FullyConnected(2)], dtype=np.float64, init=None)
    optimizer = clnet.SGD(0.1)
    schedule = clnet.Exponential(0.3, 0.5)
    net.fit(np.ones((4, 2)), np.ones((4, 2)), epochs=1, batch_size=2, optimizer=optimizer, progress=False,
            schedule=schedule)
    assert optimizer.steps == 2 and optimizer.learning_rate == 0.1  # the caller's optimizer keeps its own rate
    w, b = np.zeros((2, 2)), np.zeros(2)  # linear layer, quadratic cost: delta = (a - y) / batch
    for t in range(2):
        delta = (np.ones((2, 2)) @ w.T + b - 1) / 2
        w, b = w - schedule(t) * delta.T @ np.ones((2, 2)), b - schedule(t) * delta.sum(axis=0)
    np.testing.assert_allclose(net.layers[0].weights.get(), w, rtol=1e-14)
    np.testing.assert_allclose(net.layers[0].bias.get(), b, rtol=1e-14)


# -- validation and early stopping ---------------------------------------------------------------

def digits_like(seed=0, samples=120):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 6)) * 2
    labels = rng.integers(0, 3, samples)
    return centers[labels] + rng.normal(size=(samples, 6)), labels


def test_validation_cost_and_accuracy_match_numpy(ctx):
    x, labels = digits_like()
    xv, lv = digits_like(seed=1, samples=1500)  # more rows than one validation batch (1024)
    net = clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(8, "tanh"), clnet.FullyConnected(3, "softmax")],
                                 dtype=np.float64)
    history = net.fit(x, labels, "cross_entropy", epochs=3, optimizer=clnet.Adam(0.01), seed=0, progress=False,
                      validation=(xv, lv))
    assert isinstance(history, list) and len(history) == 3 and len(history.validation_cost) == 3
    params = [(la.weights.get(), la.bias.get()) for la in net.layers]
    z, a = ref.forward(xv, params, ["tanh", "softmax"])[-1]
    one_hot = np.eye(3)[lv]
    assert history.validation_cost[-1] == pytest.approx(ref.softmax_cross_entropy(z, one_hot), rel=1e-10)
    assert history.validation_accuracy[-1] == pytest.approx(np.mean(a.argmax(axis=1) == lv), abs=1e-12)
    assert history.best_epoch == int(np.argmin(history.validation_cost)) + 1 and not history.stopped_early


def test_validation_without_class_labels_has_no_accuracy(ctx):
    x = np.random.default_rng(2).normal(size=(20, 3))
    net = clnet.InferenceNetwork(ctx, 3, [clnet.FullyConnected(2, "sigmoid")], dtype=np.float64)
    history = net.fit(x, np.full((20, 2), 0.3), epochs=2, progress=False, validation=(x[:5], np.full((5, 2), 0.3)))
    params = [(la.weights.get(), la.bias.get()) for la in net.layers]
    a = ref.forward(x[:5], params, ["sigmoid"])[-1][1]
    assert history.validation_accuracy is None
    assert history.validation_cost[-1] == pytest.approx(ref.cost("quadratic", a, np.full((5, 2), 0.3)), rel=1e-10)


def test_early_stopping_stops_and_keeps_the_best_weights(ctx):
    """A rate too large makes the validation cost wander up: training stops `patience` epochs
    after its best epoch and the network is left with that epoch's weights."""
    x, labels = digits_like(samples=60)
    xv, lv = digits_like(seed=5, samples=40)
    net = clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(16, "relu"), clnet.FullyConnected(3, "softmax")],
                                 dtype=np.float64, seed=2)
    history = net.fit(x, labels, "cross_entropy", epochs=200, batch_size=8, optimizer=clnet.SGD(2.0), seed=1,
                      progress=False, validation=(xv, lv), early_stopping=3)
    assert history.stopped_early and len(history) == history.best_epoch + 3 < 200
    best = min(history.validation_cost)
    assert history.validation_cost[history.best_epoch - 1] == best
    params = [(la.weights.get(), la.bias.get()) for la in net.layers]
    z, _ = ref.forward(xv, params, ["relu", "softmax"])[-1]
    assert ref.softmax_cross_entropy(z, np.eye(3)[lv]) == pytest.approx(best, rel=1e-10)


def test_early_stopping_needs_validation(ctx):
    net = clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(3, "softmax")])
    with pytest.raises(ValueError, match="early_stopping needs a validation set"):
        net.fit(*digits_like(), "cross_entropy", early_stopping=2, progress=False)
    with pytest.raises(TypeError, match="validation must be a pair"):
        net.fit(*digits_like(), "cross_entropy", validation=[1, 2, 3, 4], progress=False)


# -- dropout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.9])
def test_the_dropout_mask_is_the_philox_one(ctx, dtype, rate):
    n = 1001
    src = cla.to_device(ctx.queue, np.arange(1, n + 1, dtype=dtype))
    dst = cla.empty(ctx.queue, n, dtype)
    dropout_op.apply(ctx, src, dst, rate, key=2**40 + 7, layer=3, step=12)
    keep = ref.dropout_keep(2**40 + 7, 3, 12, n, rate)
    expected = np.where(keep, np.arange(1, n + 1, dtype=dtype) * dtype.type(1 / (1 - rate)), 0)
    np.testing.assert_array_equal(dst.get(), expected.astype(dtype))
    if rate == 0.5:
        assert 0.45 < keep.mean() < 0.55


def test_dropout_gradients_match_finite_differences_with_the_same_mask(ctx):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 4)), rng.uniform(size=(5, 2))
    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(7, "tanh", dropout=0.4),
                                          clnet.FullyConnected(6, "elu", dropout=0.3),
                                          clnet.FullyConnected(2, "sigmoid")], dtype=np.float64, seed=3)
    training = clnet.TrainingNetwork(net, x)
    training.dropout_key, training.step = 99, 7
    y_dev = cla.to_device(ctx.queue, y)

    def cost():
        out = training.forward()
        return costs.value(ctx, "quadratic", "sigmoid", out, training.logits, y_dev)

    cost()
    costs.output_delta(ctx, "quadratic", training.output, y_dev, training.output_gradient)
    training.backward()
    analytic = [g.get() for g in training.gradients()]
    for g, numeric in zip(analytic, ref.central_differences(net.parameters(), cost)):
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)
    dropped = training.layers[0].out.get() == 0
    assert dropped.any() and not dropped.all()  # the mask did drop something, not everything


def test_inference_has_no_dropout_and_training_with_it_is_reproducible(ctx):
    x, labels = digits_like()

    def train(seed):
        net = clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(16, "relu", dropout=0.5),
                                              clnet.FullyConnected(3, "softmax")], dtype=np.float32, seed=1)
        net.fit(x, labels, "cross_entropy", epochs=3, batch_size=16, seed=seed, progress=False)
        return net, np.concatenate([p.get().ravel() for p in net.parameters()])

    net, first = train(5)
    _, again = train(5)
    _, other = train(6)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    params = [(la.weights.get(), la.bias.get()) for la in net.layers]
    np.testing.assert_allclose(net(x).get(), ref.forward(x, params, ["relu", "softmax"])[-1][1], rtol=1e-4,
                               atol=1e-6)


def test_dropout_arguments_are_checked_and_saved(ctx, tmp_path):
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
            clnet.FullyConnected(4, "relu", dropout=bad)
    with pytest.raises(ValueError, match="dropout on the output layer is not supported"):
        clnet.InferenceNetwork(ctx, 3, [clnet.FullyConnected(2, "softmax", dropout=0.5)])
    net = clnet.InferenceNetwork(ctx, 3, [clnet.FullyConnected(4, "relu", dropout=0.25), clnet.FullyConnected(2)])
    loaded = clnet.load(net.save(tmp_path / "net"), ctx)
    assert [la.dropout for la in loaded.layers] == [0.25, 0.0]
    assert "dropout=0.25" in repr(clnet.FullyConnected(4, "relu", dropout=0.25))


def test_bad_fit_extras_say_what_is_allowed(ctx, monkeypatch, tmp_path):
    import sys

    net = clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(3, "softmax")])
    x, labels = digits_like(samples=12)
    for kwargs, error, message in [
        ({"checkpoint": tmp_path / "c.npz", "checkpoint_every": 0}, ValueError, "checkpoint_every must be a whole"),
        ({"validation": (x, labels), "early_stopping": 0}, ValueError, "early_stopping must be a whole number >= 1"),
        ({"schedule": "fast"}, TypeError, "learning_rate must be a real number, got 'fast'"),
        ({"validation": (x[:, :4], labels)}, ValueError, r"validation x must have shape \(batch, 6\)"),
        ({"validation": (x, labels[:5])}, ValueError, "y has 5 rows but x has 12"),
    ]:
        with pytest.raises(error, match=message):
            net.fit(x, labels, "cross_entropy", progress=False, **kwargs)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'clnet\[onnx\]'"):
        net.to_onnx(tmp_path / "m.onnx")
    with pytest.raises(ImportError, match=r"pip install 'clnet\[onnx\]'"):
        clnet.from_onnx(tmp_path / "m.onnx", ctx)
