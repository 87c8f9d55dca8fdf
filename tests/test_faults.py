"""What a fault trial found (issue 24), each against what a careful user expects: threads sharing
a context, divergence, device memory, files, resume, labels."""

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
