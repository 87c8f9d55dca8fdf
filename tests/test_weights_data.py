"""Weights as data (issue 35): get_weights/set_weights in named_arrays' order with batch-norm
statistics, a refused set_weights that changes nothing, and pickling through the saved form."""

import pickle

import numpy as np
import pytest

import clnet


def _bn_net(ctx, seed=3):
    net = clnet.InferenceNetwork(ctx, (3, 6, 6), [clnet.Conv2d(4, 3, activation="linear", bias=False),
                                                 clnet.BatchNorm(), clnet.Activation("relu"), clnet.Flatten(),
                                                 clnet.FullyConnected(2, "softmax")], seed=seed)
    arrays = {name: np.random.default_rng(seed).normal(size=a.shape) for name, a in net.named_arrays().items()}
    arrays["layer_1.running_var"] = np.abs(arrays["layer_1.running_var"]) + 0.5
    net.set_arrays(arrays)
    return net, arrays


def test_get_weights_is_named_arrays_order_with_batch_norm_statistics(ctx):
    net, arrays = _bn_net(ctx)
    names = list(net.named_arrays())
    assert names == ["layer_0.weights", "layer_1.scale", "layer_1.shift", "layer_1.running_mean",
                     "layer_1.running_var", "layer_4.weights", "layer_4.bias"]
    for name, got in zip(names, net.get_weights()):
        np.testing.assert_allclose(got, arrays[name], rtol=1e-6)
    other, _ = _bn_net(ctx, seed=9)
    other.set_weights(net.get_weights())  # refused before: running_mean must have shape (4,)
    x = np.random.default_rng(1).normal(size=(5, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(other.predict(x), net.predict(x))


def test_refused_set_weights_changes_nothing(ctx):
    net, _ = _bn_net(ctx)
    before = [a.copy() for a in net.get_weights()]
    weights = [w + 1 for w in before]
    weights[-1] = np.zeros(5)  # the last array of the wrong shape: the first six are fine
    with pytest.raises(ValueError, match=r"layer_4.bias must have shape \(2,\), got \(5,\)"):
        net.set_weights(weights)
    for got, was in zip(net.get_weights(), before):
        np.testing.assert_array_equal(got, was)


def test_network_pickles_through_its_saved_form(ctx):
    net, arrays = _bn_net(ctx)
    copy = pickle.loads(pickle.dumps(net))
    assert isinstance(copy, clnet.InferenceNetwork) and copy.ctx is not net.ctx
    assert copy.description() == net.description()
    x = np.random.default_rng(2).normal(size=(4, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(x), net.predict(x), rtol=1e-6, atol=1e-7)
    assert pickle.loads(pickle.dumps(net)).ctx is copy.ctx  # one default context per process
    copy.close()


def test_pickle_of_a_damaged_form_is_refused(ctx):
    net, _ = _bn_net(ctx)
    function, (description, arrays) = net.__reduce__()
    arrays["layer_1.running_var"] = -arrays["layer_1.running_var"]
    with pytest.raises(ValueError, match="the pickled network: layer_1.running_var must be >= 0"):
        function(description, arrays)


def test_plain_network_refuses_to_pickle_and_says_how_to_save(ctx):
    net = clnet.nn.Network(ctx, 2, [clnet.FullyConnected(1, "linear")])
    with pytest.raises(TypeError, match="does not pickle .*clnet.InferenceNetwork.*save"):
        pickle.dumps(net)
