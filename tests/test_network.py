"""Layers, networks, backpropagation, SGD and initialization, against numpy and finite differences."""

import math

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.ops import costs

from . import reference as ref

X = np.array([[0.3, 0.9], [0.3, 0.9]], np.float32)
Y = np.array([[0.5], [0.5]], np.float32)


def seed_network(ctx, dtype=np.float32):
    return clnet.InferenceNetwork(ctx, 2, [clnet.FullyConnected(4, "tanh"), clnet.FullyConnected(1, "sigmoid")],
                                  dtype=dtype)


def set_params(net, params):
    for layer, (w, b) in zip(net.layers, params):
        layer.weights.set(np.ascontiguousarray(w, layer.dtype))
        layer.bias.set(np.ascontiguousarray(b, layer.dtype))


def get_params(net):
    return [(layer.weights.get().astype(np.float64), layer.bias.get().astype(np.float64)) for layer in net.layers]


def random_network(ctx, dtype, widths, names, seed):
    net = clnet.InferenceNetwork(ctx, widths[0], [clnet.FullyConnected(w, n) for w, n in zip(widths[1:], names)],
                                 dtype=dtype)
    rng = np.random.default_rng(seed)
    params = [(rng.normal(scale=0.7, size=(o, i)), rng.normal(scale=0.5, size=o)) for i, o in zip(widths, widths[1:])]
    set_params(net, params)
    return net, get_params(net)


def article_weights(weights, bias, out_weights, out_bias):
    """The article's Neanderthal transfer! fills a 4x2 column-major matrix: column by column."""
    return [(np.array(weights, np.float64).reshape(2, 4).T, np.array(bias, np.float64)),
            (np.array([out_weights], np.float64), np.array(out_bias, np.float64))]


def test_network_shapes_and_repr(ctx):
    net = seed_network(ctx)
    assert [la.weights.shape for la in net.layers] == [(4, 2), (1, 4)]
    assert [la.bias.shape for la in net.layers] == [(4,), (1,)]
    assert net.inputs == 2 and net.outputs == 1 and net.dtype == np.float32
    assert "2 -> 4 tanh -> 1 sigmoid" in repr(net)
    assert len(net.parameters()) == 4


@pytest.mark.parametrize("widths, names", [
    ([5, 7, 3], ["tanh", "sigmoid"]),
    ([4, 9, 6, 2], ["relu", "elu", "linear"]),
    ([3, 8, 8, 8, 1], ["leaky_relu", "tanh", "relu", "sigmoid"]),
])
def test_forward_against_numpy(ctx, dtype, widths, names):
    net, params = random_network(ctx, dtype, widths, names, seed=len(widths))
    x = np.random.default_rng(1).normal(size=(13, widths[0]))
    out = net(x)
    assert isinstance(out, cla.Array) and out.shape == (13, widths[-1]) and out.dtype == dtype
    expected = ref.forward(x.astype(dtype), params, names)[-1][1]
    np.testing.assert_allclose(out.get(), expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    # a device batch gives the same
    np.testing.assert_array_equal(net(cla.to_device(ctx.queue, x.astype(dtype))).get(), out.get())


def finite_difference_gradients(x, y, params, names, cost, h=1e-6):
    grads = []
    for w, b in params:
        layer_grads = []
        for p in (w, b):
            g = np.zeros_like(p)
            for index in np.ndindex(p.shape):
                saved = p[index]
                p[index] = saved + h
                up = ref.cost(cost, ref.forward(x, params, names)[-1][1], y, names[-1])
                p[index] = saved - h
                down = ref.cost(cost, ref.forward(x, params, names)[-1][1], y, names[-1])
                p[index] = saved
                g[index] = (up - down) / (2 * h)
            layer_grads.append(g)
        grads.append(tuple(layer_grads))
    return grads


@pytest.mark.parametrize("widths, names, cost", [
    ([3, 5, 4, 2], ["tanh", "elu", "sigmoid"], "quadratic"),
    ([4, 6, 5, 3], ["sigmoid", "tanh", "linear"], "quadratic"),
    ([2, 5, 4, 6, 3], ["tanh", "sigmoid", "elu", "sigmoid"], "cross_entropy"),
    ([3, 4, 5, 4, 2], ["elu", "tanh", "tanh", "tanh"], "quadratic"),
    ([3, 6, 5, 4], ["tanh", "elu", "softmax"], "cross_entropy"),
    ([4, 5, 3], ["softmax", "softmax"], "quadratic"),
    ([3, 6, 4], ["relu6", "log_softmax"], "cross_entropy"),  # PyTorch's NLLLoss after LogSoftmax
    ([4, 5, 3], ["tanh", "log_softmax"], "quadratic"),
    ([3, 6, 2], ["tanh", "linear"], "mae"),
    ([3, 6, 2], ["elu", "sigmoid"], "huber"),
])
def test_gradients_against_central_finite_differences(ctx, widths, names, cost):
    net, params = random_network(ctx, np.float64, widths, names, seed=sum(widths))
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, widths[0]))
    y = rng.uniform(0.1, 0.9, size=(6, widths[-1])) * (3 if cost in ("mae", "huber") else 1)  # huber: both sides of 1
    if names[-1] in ("softmax", "log_softmax"):
        y /= y.sum(axis=1, keepdims=True)  # target rows are distributions
    if "relu6" in names:
        x *= 6  # reach both of relu6's kinks
    training = clnet.TrainingNetwork(net, x)
    training.forward()
    costs.output_delta(ctx, cost, training.output, cla.to_device(ctx.queue, y), training.output_gradient, names[-1])
    training.backward(skip_output_derivative=costs.skips_activation_derivative(cost))
    analytic = [g.get() for g in training.gradients()]
    numeric = [g for pair in finite_difference_gradients(x, y, params, names, cost) for g in pair]
    for got, expected in zip(analytic, numeric):
        relative = np.linalg.norm(got - expected) / np.linalg.norm(got + expected)
        assert relative < 1e-6, relative
    # and the reference's own backpropagation agrees
    written_out = [g for pair in ref.gradients(x, y, params, names, cost)[0] for g in pair]
    for got, expected in zip(analytic, written_out):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)


# What each cost of the table needs: its output layer and its targets (values in [0, 1], or rows
# that are probability distributions). A cost added to the table fails here until it is listed.
COST_NEEDS = {"quadratic": ("sigmoid", "values"), "mse": ("sigmoid", "values"), "mae": ("sigmoid", "values"),
              "huber": ("sigmoid", "values"), "cross_entropy": ("sigmoid", "values"),
              "kl_divergence": ("softmax", "distributions")}


def test_every_cost_of_the_table_is_known_to_the_tests():
    assert set(COST_NEEDS) == set(clnet.COSTS)


@pytest.mark.parametrize("cost", clnet.COSTS)
def test_sgd_epochs_against_numpy(ctx, dtype, cost):
    output, targets = COST_NEEDS[cost]
    widths, names = [4, 6, 3], ["tanh", output]
    net, params = random_network(ctx, dtype, widths, names, seed=11)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(9, 4))
    y = rng.uniform(size=(9, 3)) if targets == "values" else rng.dirichlet(np.ones(3) * 0.5, size=9)
    training = clnet.TrainingNetwork(net, x)
    value = clnet.sgd(training, y, cost, epochs=1, learning_rate=0.3)
    expected_params, expected_cost = ref.sgd_epoch(x.astype(dtype).astype(np.float64), y.astype(dtype),
                                                   params, names, cost, 0.3)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    assert value == pytest.approx(expected_cost, rel=tol["rtol"])
    for (w, b), (ew, eb) in zip(get_params(net), expected_params):
        np.testing.assert_allclose(w, ew, **tol)
        np.testing.assert_allclose(b, eb, **tol)
    # five more epochs still follow the reference
    clnet.sgd(training, y, cost, epochs=5, learning_rate=0.3)
    for _ in range(5):
        expected_params, _ = ref.sgd_epoch(x.astype(dtype).astype(np.float64), y.astype(dtype), expected_params,
                                           names, cost, 0.3)
    for (w, b), (ew, eb) in zip(get_params(net), expected_params):
        np.testing.assert_allclose(w, ew, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
        np.testing.assert_allclose(b, eb, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


def test_seed_article_small_weights_learn(ctx, dtype):
    """Part 13's first example: (0.3, 0.9) -> 0.50 in 2000 epochs at rate 0.05."""
    net = seed_network(ctx, dtype)
    set_params(net, article_weights([0.3, 0.1, 0.9, 0.0, 0.6, 2.0, 3.7, 1.0], [0.7, 0.2, 1.1, 2],
                                    [0.75, 0.15, 0.22, 0.33], [0.3]))
    training = clnet.TrainingNetwork(net, X)
    cost = clnet.sgd(training, Y, "quadratic", epochs=2000, learning_rate=0.05)
    np.testing.assert_allclose(net(X).get(), [[0.5], [0.5]], atol=5e-3)
    assert cost < 1e-5


def test_seed_article_large_weights_saturate(ctx):
    """With weights far above 1 the output saturates and stays there. The article printed 0.00;
    this computation (and numpy's, below) gives 1.00: tanh and the sigmoid are saturated, so
    the gradients vanish."""
    net = seed_network(ctx)
    params = article_weights([3, 1, 9, 0, 6, 20, 37, 10], [7, 2, 11, 2], [75, 15, 22, 33], [3])
    set_params(net, params)
    clnet.sgd(clnet.TrainingNetwork(net, X), Y, "quadratic", epochs=2000, learning_rate=0.05)
    out = net(X).get()
    assert np.all(np.abs(out - 0.5) > 0.4)
    np.testing.assert_allclose(out, ref.forward(X, params, ["tanh", "sigmoid"])[-1][1], atol=1e-6)


def test_xavier_init_learns_for_most_seeds(ctx):
    net = seed_network(ctx)
    training = clnet.TrainingNetwork(net, X)
    learned = 0
    for seed in range(10):
        clnet.init(net, "xavier", seed=seed)
        clnet.sgd(training, Y, "quadratic", epochs=2000, learning_rate=0.05)
        learned += bool(np.all(np.abs(net(X).get() - 0.5) < 5e-3))
    assert learned >= 8


@pytest.mark.parametrize("method, weight_std, bias_std", [
    ("uniform01", math.sqrt(1 / 12), math.sqrt(1 / 12)),
    ("uniform", math.sqrt(1 / 300) / math.sqrt(3), math.sqrt(1 / 300) / math.sqrt(3)),  # PyTorch's default
    ("pytorch", math.sqrt(1 / 300) / math.sqrt(3), math.sqrt(1 / 300) / math.sqrt(3)),
    ("gaussian", 1.0, 1.0),
    ("xavier", math.sqrt(2 / (300 + 200)), 0.0),
    ("glorot", math.sqrt(2 / (300 + 200)), 0.0),
    ("xavier_uniform", math.sqrt(6 / (300 + 200)) / math.sqrt(3), 0.0),
    ("he", math.sqrt(2 / 300), 0.0),
    ("lecun", math.sqrt(1 / 300), 0.0),
])
def test_init_statistics_match_the_formulas(ctx, dtype, method, weight_std, bias_std):
    net = clnet.InferenceNetwork(ctx, 300, [clnet.FullyConnected(200, "tanh"), clnet.FullyConnected(150)], dtype=dtype)
    clnet.init(net, method, seed=5)
    w, b = net.layers[0].weights.get().astype(np.float64), net.layers[0].bias.get().astype(np.float64)
    n = w.size
    assert abs(w.std() - weight_std) < 5 * weight_std / math.sqrt(2 * n) * (1.2 if "uniform" in method else 1)
    expected_mean = 0.5 if method == "uniform01" else 0.0
    assert abs(w.mean() - expected_mean) < 5 * weight_std / math.sqrt(n)
    if bias_std:
        assert abs(b.std() - bias_std) < 0.2 * bias_std
    else:
        assert not b.any()
    if method == "xavier_uniform":
        assert np.abs(w).max() <= math.sqrt(6 / 500)
    if method == "uniform01":
        assert 0 < w.min() and w.max() < 1
    if method in ("uniform", "pytorch"):  # torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both
        bound = 1 / math.sqrt(300)
        assert np.abs(w).max() <= bound and np.abs(b).max() <= bound and b.min() < -0.9 * bound


def test_init_is_reproducible_and_one_stream(ctx):
    net = seed_network(ctx)
    clnet.init(net, "gaussian", seed=9)
    first = [p.get() for p in net.parameters()]
    clnet.init(net, "gaussian", seed=9)
    assert all(np.array_equal(a, p.get()) for a, p in zip(first, net.parameters()))
    # W0, b0, W1, b1 are consecutive fills of one stream
    g = clnet.Philox(ctx, 9)
    parts = [g.normal(cla.empty(ctx.queue, p.size, np.float32)).get() for p in first]
    for a, b in zip(first, parts):
        np.testing.assert_array_equal(a.ravel(), b)
    clnet.init(net, "gaussian")
    assert isinstance(net.seed, int)


def test_training_network_shares_weights_and_allocates_once(ctx):
    net = clnet.init(seed_network(ctx), "xavier", seed=3)
    training = clnet.TrainingNetwork(net, X)
    buffers = [id(t.a) for t in training.layers] + [id(g) for g in training.gradients()]
    before = net.layers[0].weights.get().copy()
    clnet.sgd(training, Y, "quadratic", epochs=3, learning_rate=0.1)
    assert training.layers[0].layer is net.layers[0]
    assert not np.array_equal(before, net.layers[0].weights.get())
    assert buffers == [id(t.a) for t in training.layers] + [id(g) for g in training.gradients()]
    assert training.layers[0].grad_x is None  # the first layer skips the gradient of its input


def test_zero_epochs_returns_the_current_cost(ctx):
    net = seed_network(ctx)
    clnet.init(net, "xavier", seed=1)
    training = clnet.TrainingNetwork(net, X)
    params = get_params(net)
    value = clnet.sgd(training, Y, "quadratic", epochs=0, learning_rate=0.1)
    assert value == pytest.approx(ref.cost("quadratic", ref.forward(X, params, ["tanh", "sigmoid"])[-1][1], Y),
                                  rel=1e-5)


def test_bad_network_input(ctx):
    with pytest.raises(ValueError, match="unknown activation 'tanhh'; choose one of"):
        clnet.FullyConnected(4, "tanhh")
    for width in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive whole number of outputs"):
            clnet.FullyConnected(width, "tanh")
    with pytest.raises(ValueError, match="positive whole number of inputs"):
        clnet.InferenceNetwork(ctx, 0, [clnet.FullyConnected(1)])
    with pytest.raises(TypeError, match="non-empty list of clnet.FullyConnected"):
        clnet.InferenceNetwork(ctx, 2, [])
    for bad in (np.int32, "int64", np.complex64):
        with pytest.raises(TypeError, match="float32 or float64"):
            clnet.InferenceNetwork(ctx, 2, [clnet.FullyConnected(1)], dtype=bad)
    net = seed_network(ctx)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\), got \(2, 3\)"):
        net(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\), got \(2,\)"):
        net(np.zeros(2))
    with pytest.raises(ValueError, match="at least one row"):
        net(np.zeros((0, 2)))
    with pytest.raises(TypeError, match="real numbers"):
        net(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="dtype float32 like the network, got float64"):
        net(cla.zeros(ctx.queue, (2, 2), np.float64))


def test_bad_training_input(ctx):
    net = seed_network(ctx)
    training = clnet.TrainingNetwork(net, X)
    with pytest.raises(ValueError, match=r"y must have shape \(2, 1\) like the training batch, got \(3, 1\)"):
        clnet.sgd(training, np.zeros((3, 1)), "quadratic", 1, 0.1)
    with pytest.raises(ValueError, match=r"y must have shape \(batch, 1\), got \(2, 2\)"):
        clnet.sgd(training, np.zeros((2, 2)), "quadratic", 1, 0.1)
    with pytest.raises(ValueError, match="unknown cost 'hinge'; choose one of quadratic, mse, mae, huber, "
                                         "cross_entropy"):
        clnet.sgd(training, Y, "hinge", 1, 0.1)
    for epochs in (-1, 1.5, True):
        with pytest.raises(ValueError, match="epochs must be a whole number >= 0"):
            clnet.sgd(training, Y, "quadratic", epochs, 0.1)
    for rate in (math.nan, math.inf, -0.1, 0.0):
        with pytest.raises(ValueError, match="learning_rate must be a positive finite number"):
            clnet.sgd(training, Y, "quadratic", 1, rate)
    with pytest.raises(TypeError, match="learning_rate must be a real number"):
        clnet.sgd(training, Y, "quadratic", 1, "fast")
    with pytest.raises(ValueError, match="unknown init method 'orthogonal'; choose one of auto, uniform, pytorch"):
        clnet.init(net, "orthogonal")
    with pytest.raises(TypeError, match="TrainingNetwork"):
        clnet.sgd(net, Y)


def test_closed_context_blocks_networks():
    from .conftest import TEST_DEVICE

    with clnet.Context(TEST_DEVICE) as ctx:
        net = seed_network(ctx)
        training = clnet.TrainingNetwork(net, X)
        weights = net.layers[0].weights
    for use in (lambda: net(X), lambda: net.layers[0].weights, lambda: training.forward(),
                lambda: clnet.sgd(training, Y), lambda: clnet.init(net, "xavier", seed=1)):
        with pytest.raises(clnet.ContextClosedError):
            use()
    assert weights.shape == (4, 2)  # an array the user kept stays valid memory, never freed under them
