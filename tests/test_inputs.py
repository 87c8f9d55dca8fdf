"""Bad input refused at the door with a clear error: non-finite values, array-likes that do not
fit, networks and batches too big for the device; and a diverging run that stops and says so."""

import dataclasses

import numpy as np
import pyopencl.array as cla
import pytest

import clnet

from . import reference as ref
from .conftest import TEST_DEVICE


def small(ctx, dtype=np.float32, last="sigmoid"):
    return clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(5, "tanh"), clnet.FullyConnected(2, last)],
                                  dtype=dtype, seed=3)


def test_non_finite_inputs_are_refused_naming_row_and_column(ctx):
    net = small(ctx)
    x, y = np.ones((6, 4)), np.full((6, 2), 0.5)
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"x \(as float32\) holds a non-finite value \(nan\) at row 3, column 1"):
        net.fit(x, y, progress=False)
    x[3, 1] = 0
    y[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"y \(as float32\) holds a non-finite value \(inf\) at row 5, column 0"):
        net.fit(x, y, progress=False)
    with pytest.raises(ValueError, match=r"at row 5, column 0"):
        clnet.sgd(clnet.TrainingNetwork(net, x), y)
    big = np.ones((2, 4))
    big[1, 2] = 1e39  # finite as float64, inf as float32
    with pytest.raises(ValueError, match=r"\(as float32\) holds a non-finite value \(inf\) at row 1, column 2"):
        net(big)
    device_x = cla.to_device(ctx.queue, np.ones((6, 4), np.float32))
    device_x[2:3].fill(np.float32(np.nan))
    with pytest.raises(ValueError, match=r"x holds a non-finite value \(nan\) at row 2, column 0"):
        net.fit(device_x, np.full((6, 2), 0.5), progress=False)


def test_array_likes_are_converted_once_at_the_door(ctx):
    net = small(ctx)
    x = [[1, 2, 3, 4], [0, 1, 0, 1]]
    expected = ref.forward(np.array(x, np.float64), [(la.weights.get(), la.bias.get()) for la in net.layers],
                           ["tanh", "sigmoid"])[-1][1]
    for form in (x, tuple(map(tuple, x)), np.array(x), np.array(x, np.float64), np.array(x, np.int8)):
        np.testing.assert_allclose(net(form).get(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(net.predict(x), expected.argmax(axis=1))
    assert net.predict([[1, 2, 3, 4]]).shape == (1,)
    history = net.fit([[1, 2, 3, 4], [0, 1, 0, 1]], [1, 0], "cross_entropy", epochs=2, progress=False)
    assert len(history) == 2 and all(np.isfinite(history))
    assert net.accuracy(x, [1, 0]) in (0.0, 0.5, 1.0)


@pytest.mark.parametrize("bad, error, message", [
    ([[1, 2, 3], [4, 5]], ValueError, r"x must be a \(batch, 4\) array of real numbers"),
    ([["a", "b", "c", "d"]], TypeError, "x must hold real numbers, got dtype <U1"),
    ([1, 2, 3, 4], ValueError, r"x must have shape \(batch, 4\), got \(4,\)"),
    ([[1, 2, 3]], ValueError, r"x must have shape \(batch, 4\), got \(1, 3\)"),
    (np.zeros((0, 4)), ValueError, "at least one row"),
    ([[1 + 2j, 0, 0, 0]], TypeError, "must hold real numbers"),
])
def test_array_likes_that_do_not_fit_raise_clearly(ctx, bad, error, message):
    net = small(ctx)
    for call in (lambda: net(bad), lambda: net.predict(bad), lambda: net.fit(bad, [0], progress=False)):
        with pytest.raises(error, match=message):
            call()


def linear_net(ctx):
    """Two linear layers: a learning rate too large makes their weights grow without bound."""
    return clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(8, "linear"), clnet.FullyConnected(2, "linear")],
                                  dtype=np.float64, seed=5)


def test_a_diverging_fit_stops_naming_the_epoch_and_keeps_the_last_finite_weights(ctx):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)), rng.normal(size=(32, 2))

    net = linear_net(ctx)
    with pytest.raises(clnet.TrainingDivergedError, match=r"in epoch (\d+).*learning rate too large \(now 50\)") as err:
        net.fit(x, y, epochs=60, batch_size=8, optimizer=clnet.SGD(50.0), seed=1, progress=False)
    epoch = err.value.epoch
    assert 1 < epoch <= 60
    reference = linear_net(ctx)  # the start of the epoch before, the last whose cost was finite (issue 24)
    reference.fit(x, y, epochs=epoch - 2, batch_size=8, optimizer=clnet.SGD(50.0), seed=1, progress=False)
    for got, want in zip(net.parameters(), reference.parameters()):
        np.testing.assert_array_equal(got.get(), want.get())


def test_a_diverging_sgd_stops_with_the_weights_of_the_last_finite_cost(ctx):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))

    net = linear_net(ctx)
    with pytest.raises(clnet.TrainingDivergedError, match=r"the cost became (nan|inf) in epoch (\d+)") as err:
        clnet.sgd(clnet.TrainingNetwork(net, x), y, epochs=200, learning_rate=30.0)
    reference = linear_net(ctx)
    cost = clnet.sgd(clnet.TrainingNetwork(reference, x), y, epochs=err.value.epoch - 2, learning_rate=30.0)
    for got, want in zip(net.parameters(), reference.parameters()):
        np.testing.assert_array_equal(got.get(), want.get())
    assert np.isfinite(clnet.sgd(clnet.TrainingNetwork(net, x), y, epochs=0)) and np.isfinite(cost)


@pytest.fixture
def tiny_device():
    """A context whose device claims Oclgrind's limits: 128 MB per buffer, 512 MB in all."""
    with clnet.Context(TEST_DEVICE) as context:
        context.info = dataclasses.replace(context.info, max_alloc_bytes=128 * 2**20, global_mem_bytes=512 * 2**20)
        yield context


def test_networks_and_batches_too_big_for_the_device_are_refused(tiny_device):
    ctx = tiny_device
    with pytest.raises(clnet.DeviceMemoryError, match=r"a network of 900,330,010 float32 parameters needs "
                                                      r"3.4 GB in one buffer \(4 arrays in one\), but .* allows "
                                                      r"at most 128.0 MB per buffer "
                                                      r"\(CL_DEVICE_MAX_MEM_ALLOC_SIZE\); use fewer or smaller layers"):
        clnet.InferenceNetwork(ctx, 30000, [clnet.FullyConnected(30000), clnet.FullyConnected(10)])
    net = clnet.InferenceNetwork(ctx, 4000, [clnet.FullyConnected(2000, "tanh"), clnet.FullyConnected(10)])
    # an x of 152.6 MB is more than a buffer may hold: inference runs in chunks instead (issue 24)
    rows = net.inference_rows()
    assert 1000 < rows < 10000
    out = net(np.zeros((10000, 4000), np.float32)).get()
    np.testing.assert_array_equal(out, np.tile(net(np.zeros((1, 4000), np.float32)).get(), (10000, 1)))
    with pytest.raises(clnet.DeviceMemoryError, match=r"training on batches of 20000 needs 152.6 MB in one buffer "
                                                      r"\(layer 0's outputs \(20000 x 2000\)\).*use a smaller "
                                                      r"batch_size"):
        clnet.TrainingNetwork(net, cla.empty(ctx.queue, (20000, 4000), np.float32))
    deep = clnet.InferenceNetwork(ctx, 4000, [clnet.FullyConnected(2000, "tanh"), clnet.FullyConnected(2000, "tanh"),
                                              clnet.FullyConnected(10)])
    # four buffers of 122 MB (below the 128 MB per buffer) and the gradients: more than 512 MB in all
    with pytest.raises(clnet.DeviceMemoryError, match=r"training on batches of 16000 needs 536.0 MB of device "
                                                      r"memory in all, but .* has 512.0 MB"):
        clnet.TrainingNetwork(deep, cla.empty(ctx.queue, (16000, 4000), np.float32))


def test_a_driver_refusal_becomes_the_same_clear_error(ctx):
    import pyopencl as cl

    from clnet.runtime import allocation

    def refused(code, kind=cl.MemoryError):
        def allocate():
            raise kind(cl._cl._ErrorRecord(msg="clEnqueueNDRangeKernel failed", code=code, routine="clEnqueue"))
        return allocate

    for code in (cl.status_code.MEM_OBJECT_ALLOCATION_FAILURE, cl.status_code.OUT_OF_RESOURCES):
        with pytest.raises(clnet.DeviceMemoryError,
                           match=r"could not allocate the memory for a test \(clEnqueue failed.*\); use less"):
            allocation.guarded(ctx, "a test", "use less", refused(code, cl.RuntimeError))
    with pytest.raises(cl.LogicError):  # any other driver error is not about memory: it passes through
        allocation.guarded(ctx, "a test", "use less", refused(cl.status_code.INVALID_VALUE, cl.LogicError))
    assert allocation.guarded(ctx, "a test", "use less", lambda: 7) == 7
