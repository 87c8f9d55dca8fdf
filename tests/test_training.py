"""Optimizers, mini-batch training, saving and loading, and the examples."""

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.app.demo import load_example
from clnet.nn import FlatArrays

from . import reference as ref
from .conftest import TEST_DEVICE

RATE = 0.05


@pytest.mark.parametrize("make, reference", [
    (lambda: clnet.SGD(0.1), lambda w, g, s: ref.sgd_step(w, g, s, 0.1)),
    (lambda: clnet.SGD(0.1, weight_decay=0.01), lambda w, g, s: ref.sgd_step(w, g, s, 0.1, weight_decay=0.01)),
    (lambda: clnet.SGD(0.1, momentum=0.9), lambda w, g, s: ref.sgd_step(w, g, s, 0.1, momentum=0.9)),
    (lambda: clnet.SGD(0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
     lambda w, g, s: ref.sgd_step(w, g, s, 0.05, momentum=0.8, nesterov=True, weight_decay=0.02)),
    (lambda: clnet.Adam(), lambda w, g, s: ref.adam_step(w, g, s, 1e-3, 0.9, 0.999, 1e-8)),
    (lambda: clnet.Adam(0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
     lambda w, g, s: ref.adam_step(w, g, s, 0.01, 0.8, 0.99, 1e-6, weight_decay=0.1)),
])
def test_optimizer_steps_against_numpy(ctx, make, reference):
    """Six steps over three arrays in one flat buffer (one launch each), against PyTorch's formulas
    written out in numpy per array; the padding between the arrays stays zero."""
    rng = np.random.default_rng(1)
    shapes = [(7, 5), (7,), (3, 7)]
    host = [rng.normal(size=s) for s in shapes]
    params, grads = FlatArrays(ctx, shapes, np.float64), FlatArrays(ctx, shapes, np.float64)
    for view, w in zip(params.views, host):
        view.set(w)
    optimizer, states = make(), [{} for _ in shapes]
    for step in range(6):
        step_grads = [rng.normal(size=s) for s in shapes]
        for view, g in zip(grads.views, step_grads):
            view.set(g)
        launches = ctx.launches
        optimizer.step(params, grads)
        assert step == 0 or ctx.launches == launches + 1  # the first step also zeroes the state
        host = [reference(w, g, state) for w, g, state in zip(host, step_grads, states)]
    for got, expected in zip(params.views, host):
        np.testing.assert_allclose(got.get(), expected, rtol=1e-10, atol=1e-12)
    flat, used = params.flat.get(), np.zeros(params.flat.size, bool)
    for offset, w in zip(params.offsets, host):
        used[offset:offset + w.size] = True
    assert not flat[~used].any()


def test_optimizer_state_follows_its_parameter_buffer_and_is_checked(ctx):
    shapes = [(3, 2), (3,)]
    params, grads = FlatArrays(ctx, shapes, np.float32), FlatArrays(ctx, shapes, np.float32)
    adam = clnet.Adam()
    adam.step(params, grads)
    first_state = adam.state(params)
    assert len(first_state) == 2 and adam.steps == 1 and adam.state(params) is first_state
    other = FlatArrays(ctx, shapes, np.float32)
    adam.step(other, other.like())  # another network: fresh moments, step count from 1
    assert adam.steps == 1 and adam.state(other)[0] is not first_state[0]
    with pytest.raises(ValueError, match="shapes, dtype and context"):
        adam.step(params, FlatArrays(ctx, [(3, 2)], np.float32))
    with pytest.raises(TypeError, match="FlatArrays"):
        adam.step(params.views, grads.views)


def test_optimizer_arguments_are_checked():
    for bad in (dict(learning_rate=0), dict(learning_rate=float("nan")), dict(momentum=1.0), dict(momentum=-0.1),
                dict(weight_decay=-1)):
        with pytest.raises(ValueError, match="must be"):
            clnet.SGD(**bad)
    with pytest.raises(ValueError, match="nesterov momentum needs momentum > 0"):
        clnet.SGD(0.1, nesterov=True)
    for bad in (dict(beta1=1.0), dict(beta2=-0.5), dict(eps=0), dict(learning_rate=-1e-3)):
        with pytest.raises(ValueError, match="must be"):
            clnet.Adam(**bad)


def small_network(ctx, dtype=np.float64, last="sigmoid", outputs=3, seed=4):
    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(6, "tanh"), clnet.FullyConnected(outputs, last)],
                                 dtype=dtype)
    return clnet.init(net, "xavier", seed=seed)


def params_of(net):
    return [(la.weights.get().astype(np.float64), la.bias.get().astype(np.float64)) for la in net.layers]


def test_fit_with_a_batch_size_that_does_not_divide_the_data(ctx):
    """Two epochs of plain SGD in order (no shuffle) against the same steps written in numpy."""
    net = small_network(ctx)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(23, 4)), rng.uniform(size=(23, 3))
    params = params_of(net)
    history = net.fit(x, y, "quadratic", epochs=2, batch_size=10, optimizer=clnet.SGD(RATE), shuffle=False,
                      progress=False)
    expected_history = []
    for _ in range(2):
        total = 0.0
        for start in (0, 10, 20):  # batches of 10, 10 and 3
            xb, yb = x[start:start + 10], y[start:start + 10]
            params, batch_cost = ref.sgd_epoch(xb, yb, params, ["tanh", "sigmoid"], "quadratic", RATE)
            total += batch_cost * len(xb) / len(x)
        expected_history.append(total)
    np.testing.assert_allclose(history, expected_history, rtol=1e-12)
    for (w, b), (ew, eb) in zip(params_of(net), params):
        np.testing.assert_allclose(w, ew, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(b, eb, rtol=1e-11, atol=1e-13)


def test_fit_visits_every_sample_once_per_epoch_in_a_shuffled_order(ctx):
    """A batch of every sample gives the same step in any order, shuffled or not."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(30, 4)), rng.uniform(size=(30, 3))
    whole = small_network(ctx)
    shuffled = small_network(ctx)
    # one batch of everything: the order of the rows cannot change the step
    a = whole.fit(x, y, epochs=3, batch_size=30, optimizer=clnet.SGD(RATE), shuffle=False, progress=False)
    b = shuffled.fit(x, y, epochs=3, batch_size=64, optimizer=clnet.SGD(RATE), shuffle=True, seed=1,
                     progress=False)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_same_seed_same_history(ctx, dtype):
    rng = np.random.default_rng(7)
    x, labels = rng.normal(size=(50, 4)).astype(dtype), rng.integers(0, 3, size=50)
    histories, outputs = [], []
    for _ in range(2):
        net = small_network(ctx, dtype, last="softmax")
        histories.append(net.fit(x, labels, "cross_entropy", epochs=4, batch_size=8, optimizer=clnet.Adam(0.01),
                                 seed=42, progress=False))
        outputs.append(net(x).get())
    assert histories[0] == histories[1]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert histories[0][-1] < histories[0][0]
    other = small_network(ctx, dtype, last="softmax")
    assert other.fit(x, labels, "cross_entropy", epochs=4, batch_size=8, optimizer=clnet.Adam(0.01), seed=43,
                     progress=False) != histories[0]


def test_fit_accepts_device_data_and_labels(ctx):
    rng = np.random.default_rng(8)
    x, labels = rng.normal(size=(20, 4)), rng.integers(0, 3, size=20)
    host_net, device_net = small_network(ctx, last="softmax"), small_network(ctx, last="softmax")
    a = host_net.fit(x, labels, "cross_entropy", epochs=2, batch_size=6, seed=3, progress=False)
    b = device_net.fit(cla.to_device(ctx.queue, x), cla.to_device(ctx.queue, labels.astype(np.int32)),
                       "cross_entropy", epochs=2, batch_size=6, seed=3, progress=False)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_predict_and_accuracy(ctx):
    net = small_network(ctx, last="softmax")
    x = np.random.default_rng(9).normal(size=(11, 4))
    scores = net(x).get()
    np.testing.assert_array_equal(net.predict(x, batch_size=4), scores.argmax(axis=1))
    labels = scores.argmax(axis=1)
    labels[:3] = (labels[:3] + 1) % 3
    assert net.accuracy(x, labels) == pytest.approx(8 / 11)
    assert net.accuracy(x, np.eye(3)[labels]) == pytest.approx(8 / 11)  # one-hot works too
    single = small_network(ctx, outputs=1)
    np.testing.assert_array_equal(single.predict(x), (single(x).get()[:, 0] > 0.5).astype(int))


def test_bad_fit_arguments(ctx):
    net = small_network(ctx, last="softmax")
    x = np.zeros((10, 4))
    with pytest.raises(ValueError, match="y has 9 rows but x has 10"):
        net.fit(x, np.zeros((9, 3)), progress=False)
    with pytest.raises(ValueError, match=r"class labels must be in 0..2 for 3 output\(s\), got \[3\]"):
        net.fit(x, np.array([0, 1, 2, 3, 0, 1, 2, 0, 1, 2]), "cross_entropy", progress=False)
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        net.fit(x, np.zeros((10, 3)), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="epochs must be a whole number >= 0"):
        net.fit(x, np.zeros((10, 3)), epochs=-2, progress=False)
    with pytest.raises(TypeError, match=r"optimizer must be a clnet.Optimizer \(SGD, Adam, AdamW, RMSprop or one"):
        net.fit(x, np.zeros((10, 3)), optimizer="adam", progress=False)
    with pytest.raises(ValueError, match="cross_entropy cost needs a sigmoid, softmax or log_softmax output layer"):
        small_network(ctx, last="tanh").fit(x, np.zeros((10, 3)), "cross_entropy", progress=False)


def test_save_then_load_gives_identical_outputs(ctx, dtype, tmp_path):
    net = small_network(ctx, dtype, last="softmax")
    path = tmp_path / "net.npz"
    net.save(path)
    x = np.random.default_rng(10).normal(size=(5, 4))
    loaded = clnet.load(path, ctx)
    assert loaded.dtype == dtype and [la.activation for la in loaded.layers] == ["tanh", "softmax"]
    np.testing.assert_array_equal(loaded(x).get(), net(x).get())
    with clnet.Context(TEST_DEVICE) as other:  # another context (on a GPU machine: another device)
        np.testing.assert_array_equal(clnet.load(path, other)(x).get(), net(x).get())
    as_float32 = clnet.load(path, ctx, dtype=np.float32)
    assert as_float32.dtype == np.float32
    np.testing.assert_allclose(as_float32(x).get(), net(x).get(), rtol=1e-5, atol=1e-6)


def test_corrupt_or_foreign_files_raise(ctx, tmp_path):
    net = small_network(ctx)
    good = tmp_path / "good.npz"
    net.save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable .npz file"):
        clnet.load(truncated, ctx)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a clnet network file"):
        clnet.load(foreign, ctx)
    arrays = dict(np.load(good))
    arrays["layer_1.weights"] = np.zeros((2, 6))
    wrong_shape = tmp_path / "wrong_shape.npz"
    np.savez(wrong_shape, **arrays)
    with pytest.raises(ValueError, match=r"layer_1.weights must be a float array of shape \(3, 6\)"):
        clnet.load(wrong_shape, ctx)
    del arrays["layer_0.bias"]
    missing = tmp_path / "missing.npz"
    np.savez(missing, **arrays)
    with pytest.raises(ValueError, match="expected arrays"):
        clnet.load(missing, ctx)
    with pytest.raises(FileNotFoundError):
        clnet.load(tmp_path / "absent.npz", ctx)


def test_digits_example_reaches_95_percent(ctx):
    result = load_example("digits").run(ctx, progress=False)
    assert result["test"] == 360 and result["accuracy"] >= 0.95


def test_regression_example_learns_the_function(ctx):
    result = load_example("regression").run(ctx, progress=False)
    assert result["mse"] < 0.01 < result["baseline_mse"]
    assert result["r2"] == pytest.approx(1 - result["mse"] / result["baseline_mse"], rel=1e-6)  # R²'s definition


def test_train_validate_export_example_matches_digits_and_repeats_bit_for_bit(ctx, tmp_path):
    """Dropout, a cosine schedule and early stopping reach the plain digits example's test accuracy
    (to within 1%, 3 of its 360 images: with PyTorch's initialization for relu the two are 0.983 and
    0.989), the exported ONNX model predicts the same classes, and a second run with the same seed
    gives the same weights bit for bit."""
    pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")
    example = load_example("train_validate_export")
    first = example.run(ctx, tmp_path / "a.onnx", progress=False)
    again = example.run(ctx, tmp_path / "b.onnx", progress=False)
    plain = load_example("digits").run(ctx, progress=False)
    assert first["accuracy"] >= max(plain["accuracy"] - 0.01, 0.97) and first["onnx_accuracy"] == first["accuracy"]
    assert first["agree"] == 1.0 and first["stopped_early"]
    assert np.array_equal(first["weights"], again["weights"]) and first["accuracy"] == again["accuracy"]
