"""One flat buffer per network for its parameters and one for its gradients; networks that start
initialized; an optimizer step over a whole network in one kernel launch."""

import math
import subprocess
import sys

import numpy as np
import pytest

import clnet
from clnet.nn import FlatArrays

from . import reference as ref
from .conftest import TEST_DEVICE

X = np.array([[0.3, 0.9], [0.3, 0.9]], np.float32)
Y = np.array([[0.5], [0.5]], np.float32)


def three_layers(ctx, dtype=np.float32, **kwargs):
    return clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(7, "relu"), clnet.FullyConnected(6, "tanh"),
                                           clnet.FullyConnected(3, "sigmoid")], dtype=dtype, **kwargs)


def test_parameters_and_gradients_are_views_of_one_buffer_each(ctx, dtype):
    net = three_layers(ctx, dtype)
    flat = net.parameter_buffer.flat
    training = clnet.TrainingNetwork(net, np.ones((4, 5)))
    for arrays, buffer in ((net.parameters(), flat), (training.gradients(), net.gradient_buffer.flat)):
        assert [a.shape for a in arrays] == [(7, 5), (7,), (6, 7), (6,), (3, 6), (3,)]
        assert all(a.base_data is buffer.base_data for a in arrays)
        offsets = [a.offset for a in arrays]
        assert offsets == sorted(offsets) and all(o % 128 == 0 for o in offsets)
    # a weight written through the layer's view is where the buffer's layout says
    net.layers[1].weights.set(np.full((6, 7), 2.5, dtype))
    host = flat.get()
    offset = net.parameter_buffer.offsets[2]
    assert np.all(host[offset:offset + 42] == 2.5) and host[offset + 42:offset + 64].sum() == 0
    # every training network of a net shares its one gradient buffer
    other = clnet.TrainingNetwork(net, np.ones((2, 5)))
    assert other.gradients()[0].base_data is training.gradients()[0].base_data


def test_a_step_over_a_three_layer_network_is_one_launch(ctx):
    net = three_layers(ctx, np.float64)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(8, 5)), rng.uniform(size=(8, 3))
    training = clnet.TrainingNetwork(net, x)
    clnet.sgd(training, y, epochs=1)  # builds every kernel
    for optimizer in (clnet.SGD(0.1), clnet.SGD(0.1, momentum=0.9), clnet.Adam()):
        optimizer.step(net.parameter_buffer, net.gradient_buffer)  # the first step makes the state
        before, launches = [p.get() for p in net.parameters()], ctx.launches
        optimizer.step(net.parameter_buffer, net.gradient_buffer)
        assert ctx.launches - launches == 1, optimizer
        assert any(not np.array_equal(a, p.get()) for a, p in zip(before, net.parameters()))


def test_optimizer_state_is_released_with_the_context():
    with clnet.Context(TEST_DEVICE) as ctx:
        net = three_layers(ctx)
        adam = clnet.Adam()
        net.fit(np.ones((4, 5)), np.ones((4, 3)) / 2, epochs=1, optimizer=adam, progress=False)
        state = adam.state(net.parameter_buffer)
        assert state[0].flat.size == net.parameter_buffer.flat.size
    with pytest.raises(clnet.ContextClosedError):
        state[0].flat.get()
    with pytest.raises(clnet.ContextClosedError):
        net.parameter_buffer.views.copy()


def test_a_new_network_starts_initialized_and_learns_the_seed_example(ctx):
    """Without clnet.init, the article's 2-4-1 network is not symmetric and trains to 0.50."""
    net = clnet.InferenceNetwork(ctx, 2, [clnet.FullyConnected(4, "tanh"), clnet.FullyConnected(1, "sigmoid")])
    w = net.layers[0].weights.get()
    assert len({tuple(row) for row in w}) == 4  # no two hidden units alike: not symmetric
    assert np.all(w != 0) and not net.layers[0].bias.get().any()
    clnet.sgd(clnet.TrainingNetwork(net, X), Y, "quadratic", epochs=2000, learning_rate=0.05)
    np.testing.assert_allclose(net(X).get(), [[0.5], [0.5]], atol=5e-3)


def test_the_default_is_pytorchs_for_the_relu_family_and_xavier_for_the_others(ctx):
    """auto from seed 0 equals the Philox stream drawn layer by layer with each method's range:
    U(±1/sqrt(fan_in)) for weights and biases after relu, relu6, leaky_relu and elu (PyTorch's
    default), N(0, 2 / (fan_in + fan_out)) and zero biases for the others."""
    activations = ["relu", "tanh", "leaky_relu", "elu", "linear", "relu6"]
    widths = [300, 200, 150, 120, 100, 10, 5]
    net = clnet.InferenceNetwork(ctx, widths[0], [clnet.FullyConnected(w, a) for w, a in zip(widths[1:], activations)])
    expected = clnet.InferenceNetwork(ctx, widths[0], [clnet.FullyConnected(w, a)
                                                      for w, a in zip(widths[1:], activations)], init=None)
    assert not any(p.get().any() for p in expected.parameters())  # init=None: zeros, for the caller to set
    g = clnet.Philox(ctx, 0)
    for layer, inputs, outputs, activation in zip(expected.layers, widths, widths[1:], activations):
        if activation in ("relu", "relu6", "leaky_relu", "elu"):
            for array in (layer.weights, layer.bias):
                g.uniform(array, -1 / math.sqrt(inputs), 1 / math.sqrt(inputs))
        else:
            g.normal(layer.weights, std=math.sqrt(2 / (inputs + outputs)))
    for got, want in zip(net.parameters(), expected.parameters()):
        np.testing.assert_array_equal(got.get(), want.get())
    assert net.seed == 0
    first = net.layers[0].weights.get()
    assert abs(first.std() - 1 / math.sqrt(3 * 300)) < 0.05 / math.sqrt(3 * 300)  # U(-a, a): a / sqrt(3)


def test_the_same_script_twice_gives_the_same_weights():
    script = ("import numpy as np, clnet\n"
              f"with clnet.Context({TEST_DEVICE!r}) as ctx:\n"
              "    net = clnet.InferenceNetwork(ctx, 3, [clnet.FullyConnected(5, 'relu'), clnet.FullyConnected(2)])\n"
              "    print(np.concatenate([p.get().ravel() for p in net.parameters()]).tobytes().hex())\n")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) > 100


def test_seeds_and_bad_init_arguments(ctx):
    a = three_layers(ctx, seed=1).parameter_buffer.flat.get()
    b = three_layers(ctx, seed=2).parameter_buffer.flat.get()
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="unknown init method 'zeros'; choose one of auto, uniform.*or None"):
        three_layers(ctx, init="zeros")
    with pytest.raises(ValueError, match="seed must be in 0..2\\*\\*64-1"):
        three_layers(ctx, seed=-1)


def test_flat_arrays_copy_to_the_host_in_one_piece(ctx):
    arrays = FlatArrays(ctx, [(2, 3), (4,)], np.float64)
    arrays.views[0].set(np.arange(6.0).reshape(2, 3))
    arrays.views[1].set(np.full(4, 7.0))
    host = arrays.get()
    np.testing.assert_array_equal(host[0], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(host[1], np.full(4, 7.0))
    assert arrays.like().flat.size == arrays.flat.size == 16 + 16  # 128-byte aligned starts


def test_fit_with_the_flat_buffers_matches_numpy(ctx):
    """Plain SGD by fit, one launch per update, against the same steps in numpy."""
    net = three_layers(ctx, np.float64)
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(6, 5)), rng.uniform(size=(6, 3))
    params = [(layer.weights.get(), layer.bias.get()) for layer in net.layers]
    net.fit(x, y, "quadratic", epochs=3, batch_size=6, optimizer=clnet.SGD(0.2), shuffle=False, progress=False)
    for _ in range(3):
        params, _ = ref.sgd_epoch(x, y, params, ["relu", "tanh", "sigmoid"], "quadratic", 0.2)
    for layer, (w, b) in zip(net.layers, params):
        np.testing.assert_allclose(layer.weights.get(), w, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(layer.bias.get(), b, rtol=1e-11, atol=1e-13)
