"""The fused training kernels and the recorded passes (issue 13), each against numpy written
out (tests/reference.py) and against the unfused kernels they replace."""

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.ops import activations, bias, blas, costs, dense, tiled_gemm

from . import reference as ref


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture
def clnet_gemm(ctx, dtype):
    """clnet's own GEMM for this test, whatever the device would choose."""
    chosen = blas.settings(ctx, dtype)
    saved = chosen.small, chosen.large
    chosen.small = chosen.large = "clnet"
    yield chosen
    chosen.small, chosen.large = saved


@pytest.mark.parametrize("name, ratio", [(name, dense.TRANSPOSE_RATIO) for name in activations.ACTIVATIONS]
                         + [(name, 0) for name in ("tanh", "relu", "sigmoid")])  # 0: out.T = W @ x.T
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (33, 10, 64), (26, 100, 70), (7, 50, 9)])
def test_fused_forward_matches_numpy_and_keeps_the_logits(ctx, dtype, clnet_gemm, monkeypatch, name, m, n, k,
                                                         ratio):
    monkeypatch.setattr(dense, "TRANSPOSE_RATIO", ratio)
    rng = np.random.default_rng(m * n + k)
    x, w, b = rng.normal(size=(m, k)), rng.normal(size=(n, k)) / np.sqrt(k), rng.normal(size=n)
    out, z = cla.empty(ctx.queue, (m, n), dtype), cla.empty(ctx.queue, (m, n), dtype)
    fused = dense.fuses_forward(ctx, dtype, name, m, n, k)
    fits_a_tile = n <= 2 * (clnet_gemm.tiles.width or (8 if dtype == np.float32 else 4))
    assert fused == (name not in activations.ROWWISE or (name == "softmax" and fits_a_tile))  # log_softmax: never
    dense.forward(ctx, *(cla.to_device(ctx.queue, v.astype(dtype)) for v in (x, w, b)), name, out, z)
    expected_z = x.astype(dtype).astype(np.float64) @ w.astype(dtype).T + b.astype(dtype)
    np.testing.assert_allclose(z.get(), expected_z, **tol(dtype))
    np.testing.assert_allclose(out.get(), ref.apply(name, expected_z), **tol(dtype))
    alone = cla.empty(ctx.queue, (m, n), dtype)  # without z, out holds z on the way
    dense.forward(ctx, *(cla.to_device(ctx.queue, v.astype(dtype)) for v in (x, w, b)), name, alone)
    np.testing.assert_array_equal(alone.get(), out.get())


@pytest.mark.parametrize("name", ["tanh", "relu", "sigmoid"])
def test_fused_and_unfused_forward_agree_to_rounding(ctx, clnet_gemm, name):
    dtype = np.dtype(np.float32)
    rng = np.random.default_rng(3)
    x, w, b = (cla.to_device(ctx.queue, v.astype(dtype)) for v in
               (rng.normal(size=(40, 50)), rng.normal(size=(70, 50)) / 7, rng.normal(size=70)))
    fused, unfused = cla.empty(ctx.queue, (40, 70), dtype), cla.empty(ctx.queue, (40, 70), dtype)
    dense.forward(ctx, x, w, b, name, fused)
    blas.gemm(ctx, x, w, unfused, trans_b=True)
    bias.add_bias(ctx, unfused, b)
    activations.forward(ctx, name, unfused)
    np.testing.assert_allclose(fused.get(), unfused.get(), rtol=4e-7, atol=4e-7)


def test_forward_checks_its_arguments(ctx, clnet_gemm):
    x, w = cla.zeros(ctx.queue, (4, 3), np.float32), cla.zeros(ctx.queue, (5, 3), np.float32)
    with pytest.raises(ValueError, match=r"layer maps x \(batch, 3\) to out \(batch, 5\)"):
        dense.forward(ctx, x, w, cla.zeros(ctx.queue, 5, np.float32), "tanh", cla.empty(ctx.queue, (4, 6), np.float32))
    with pytest.raises(ValueError, match="b must have shape"):
        dense.forward(ctx, x, w, cla.zeros(ctx.queue, 4, np.float32), "tanh", cla.empty(ctx.queue, (4, 5), np.float32))
    with pytest.raises(TypeError, match="one dtype"):
        dense.forward(ctx, x, w.astype(np.float64), cla.zeros(ctx.queue, 5, np.float32), "tanh",
                      cla.empty(ctx.queue, (4, 5), np.float32))


@pytest.mark.parametrize("name", [*activations.ACTIVATIONS, None])
@pytest.mark.parametrize("cols", [1, 13, 16, 37])
@pytest.mark.parametrize("fused_limit", [dense.FUSED_BACKWARD, 0])
def test_backward_with_the_bias_gradient(ctx, dtype, monkeypatch, name, cols, fused_limit):
    monkeypatch.setattr(dense, "FUSED_BACKWARD", fused_limit)
    rng = np.random.default_rng(cols)
    z, g = rng.normal(size=(9, cols)), rng.normal(size=(9, cols))
    a = ref.apply(name or "linear", z)
    delta, grad_bias = cla.to_device(ctx.queue, g.astype(dtype)), cla.empty(ctx.queue, cols, dtype)
    saved = z if name is not None and activations.reads(name) == "z" else a
    dense.backward_bias(ctx, name, cla.to_device(ctx.queue, saved.astype(dtype)), delta, grad_bias)
    expected = g if name is None else ref.backward(name, z, a, g)
    np.testing.assert_allclose(delta.get(), expected, **tol(dtype))
    np.testing.assert_allclose(grad_bias.get(), expected.sum(axis=0), **tol(dtype))


@pytest.mark.parametrize("stride", [0, 1 << 30])  # pack everything; read in place where allowed
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (13, 33, 17), (25, 64, 5), (40, 7, 100)])
def test_gemm_layouts(ctx, dtype, clnet_gemm, monkeypatch, stride, trans_a, trans_b, m, n, k):
    monkeypatch.setattr(tiled_gemm, "IN_PLACE_STRIDE", stride)
    rng = np.random.default_rng(m + n + k)
    a = rng.normal(size=(k, m) if trans_a else (m, k))
    b = rng.normal(size=(n, k) if trans_b else (k, n))
    c = rng.normal(size=(m, n))
    cd = cla.to_device(ctx.queue, c.astype(dtype))
    blas.gemm(ctx, cla.to_device(ctx.queue, a.astype(dtype)), cla.to_device(ctx.queue, b.astype(dtype)), cd,
              trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=2.0)
    expected = 0.5 * (a.T if trans_a else a) @ (b.T if trans_b else b) + 2 * c
    np.testing.assert_allclose(cd.get(), expected, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("cost, activation", [("quadratic", "tanh"), ("cross_entropy", "sigmoid"),
                                              ("cross_entropy", "softmax")])
@pytest.mark.parametrize("fused_limit", [costs.FUSED_DELTA, 0])
def test_the_cost_and_its_gradient_in_one_launch(ctx, dtype, monkeypatch, cost, activation, fused_limit):
    monkeypatch.setattr(costs, "FUSED_DELTA", fused_limit)
    rng = np.random.default_rng(7)
    z = rng.normal(size=(11, 5))
    a = ref.softmax(z) if activation == "softmax" else ref.activation(activation, z)
    y = np.eye(5)[rng.integers(0, 5, 11)] if activation == "softmax" else rng.uniform(size=(11, 5))
    ad, zd, yd = (cla.to_device(ctx.queue, v.astype(dtype)) for v in (a, z, y))
    out, delta = cla.zeros(ctx.queue, 3, dtype), cla.empty(ctx.queue, (11, 5), dtype)
    before = ctx.launches
    costs.value_into(ctx, cost, activation, ad, zd, yd, out, 1, batches=22, delta=delta)
    assert ctx.launches - before == (1 if fused_limit else 2)
    np.testing.assert_allclose(out.get()[1], ref.cost(cost, a, y, activation) / 2, **tol(dtype))
    np.testing.assert_allclose(delta.get(), (a - y) / 11, **tol(dtype))


original_gemm = blas.gemm


def _net(ctx, dtype, seed=1):
    return clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(9, "relu"), clnet.FullyConnected(4, "softmax")],
                                  dtype=dtype, seed=seed)


def test_replayed_passes_give_the_bits_of_live_ones_and_count_their_launches(ctx, dtype, monkeypatch):
    rng = np.random.default_rng(8)
    x, labels = rng.normal(size=(30, 6)), rng.integers(0, 4, 30)
    replayed, live = _net(ctx, dtype), _net(ctx, dtype)

    def train(net):
        net.fit(x, labels, "cross_entropy", epochs=3, batch_size=8, optimizer=clnet.Adam(0.01), seed=4, progress=False)

    train(replayed)
    with monkeypatch.context() as patch:
        patch.setattr(clnet.TrainingNetwork, "_run", lambda self, key, queue_pass: queue_pass())
        train(live)
    np.testing.assert_array_equal(replayed.parameter_buffer.flat.get(), live.parameter_buffer.flat.get())
    training = clnet.TrainingNetwork(replayed, x[:8])
    training.forward()
    before = ctx.launches
    training.forward()
    plan = next(iter(training._plans.values()))
    assert ctx.launches - before == len(plan) > 0


def test_a_pass_with_work_it_cannot_replay_runs_live_and_is_recorded_once(ctx, dtype, monkeypatch):
    training = clnet.TrainingNetwork(_net(ctx, dtype), np.zeros((5, 6)))
    with ctx.record() as plan:
        training.net.layers[0].forward(training.x, training.layers[0].a)
        ctx.not_recordable()
    assert len(plan) > 0 and not plan.complete
    recordings = []
    original = type(ctx).record

    def record(self):
        recordings.append(1)
        return original(self)

    monkeypatch.setattr(type(ctx), "record", record)
    monkeypatch.setattr(blas, "gemm", lambda ctx, *args, **kwargs: (ctx.not_recordable(), original_gemm(
        ctx, *args, **kwargs))[1])
    for _ in range(3):
        before = ctx.launches
        training.backward()
        assert ctx.launches > before  # queued live each time
    assert len(recordings) == 1 and list(training._plans.values()) == [None]
    with pytest.raises(RuntimeError, match="already being recorded"), ctx.record(), ctx.record():
        pass


def test_new_gemm_settings_record_a_new_plan(ctx, dtype, clnet_gemm):
    net = _net(ctx, dtype)
    x = np.random.default_rng(9).normal(size=(7, 6))
    training = clnet.TrainingNetwork(net, x)
    first = training.forward().get()
    saved = clnet_gemm.tiles
    clnet_gemm.tiles = tiled_gemm.TileParams(3, 4)
    try:
        second = training.forward().get()
    finally:
        clnet_gemm.tiles = saved
    assert len(training._plans) == 2
    np.testing.assert_allclose(second, first, **tol(dtype))
    params = [(la.weights.get(), la.bias.get()) for la in net.layers]
    np.testing.assert_allclose(first, ref.forward(x.astype(dtype), params, ["relu", "softmax"])[-1][1], **tol(dtype))


@pytest.mark.parametrize("make", [lambda: clnet.SGD(0.1, weight_decay=0.01), lambda: clnet.SGD(0.1, momentum=0.9),
                                  lambda: clnet.Adam(0.01)], ids=["sgd", "momentum", "adam"])
def test_an_update_keeps_the_weights_it_starts_from_in_the_same_launch(ctx, dtype, make):
    x, y = np.random.default_rng(10).normal(size=(5, 6)), np.eye(4)[[0, 1, 2, 3, 0]]
    nets = [_net(ctx, dtype), _net(ctx, dtype)]
    for net in nets:
        training = clnet.TrainingNetwork(net, x)
        costs.output_delta(ctx, "cross_entropy", training.forward(), cla.to_device(ctx.queue, y.astype(dtype)),
                           training.output_gradient)
        training.backward(skip_output_derivative=True)
    before, kept, optimizer = nets[0].parameter_buffer.flat.get(), nets[0].kept_buffer, make()
    optimizer.state(nets[0].parameter_buffer)  # made (and zeroed) first
    launches = ctx.launches
    optimizer.step(nets[0].parameter_buffer, nets[0].gradient_buffer, keep=kept)
    assert ctx.launches - launches == 1
    make().step(nets[1].parameter_buffer, nets[1].gradient_buffer)
    np.testing.assert_array_equal(kept.flat.get(), before)
    np.testing.assert_array_equal(nets[0].parameter_buffer.flat.get(), nets[1].parameter_buffer.flat.get())
    assert not np.array_equal(before, nets[1].parameter_buffer.flat.get())
    with pytest.raises(ValueError, match="keep buffer must have the parameters' shapes"):
        other = clnet.InferenceNetwork(ctx, 3, [clnet.FullyConnected(2)], dtype=dtype)
        make().step(nets[0].parameter_buffer, nets[0].gradient_buffer, keep=other.parameter_buffer)


def test_fit_keeps_its_training_networks_from_call_to_call(ctx, dtype, monkeypatch):
    rng = np.random.default_rng(11)
    x, labels = rng.normal(size=(20, 6)), rng.integers(0, 4, 20)
    kept, fresh = _net(ctx, dtype), _net(ctx, dtype)
    adam = clnet.Adam(0.01)
    kept.fit(x, labels, "cross_entropy", epochs=1, batch_size=8, optimizer=adam, seed=5, progress=False)
    trainers = dict(kept._training)
    assert sorted(trainers) == [4, 8] and all(t._plans for t in trainers.values())
    kept.fit(x, labels, "cross_entropy", epochs=1, batch_size=8, optimizer=adam, seed=5, progress=False)
    assert kept._training == trainers  # the same objects, with their recorded passes
    with monkeypatch.context() as patch:  # the same two calls, every launch made live
        patch.setattr(clnet.TrainingNetwork, "_run", lambda self, key, queue_pass: queue_pass())
        adam = clnet.Adam(0.01)
        for _ in range(2):
            fresh.fit(x, labels, "cross_entropy", epochs=1, batch_size=8, optimizer=adam, seed=5, progress=False)
    np.testing.assert_array_equal(kept.parameter_buffer.flat.get(), fresh.parameter_buffer.flat.get())
    kept.release()
    assert not kept._training and all(t._closed for t in trainers.values())


@pytest.mark.parametrize("name", activations.ELEMENTWISE)
def test_bias_and_activation_in_one_pass_after_a_foreign_product(ctx, dtype, name):
    """activations.forward_with_bias: the epilogue of a product clnet did not compute (CLBlast):
    z += b, then a = f(z), z kept, and in place."""
    rng = np.random.default_rng(5)
    z0, b = rng.normal(size=(7, 37)) * 2, rng.normal(size=37)
    z, out = cla.to_device(ctx.queue, z0.astype(dtype)), cla.empty(ctx.queue, (7, 37), dtype)
    alpha = 0.3 if name in activations.DEFAULT_ALPHA else None
    activations.forward_with_bias(ctx, name, z, cla.to_device(ctx.queue, b.astype(dtype)), out, alpha)
    expected_z = z0.astype(dtype).astype(np.float64) + b.astype(dtype)
    np.testing.assert_allclose(z.get(), expected_z, **tol(dtype))
    f = {"leaky_relu": lambda t: np.where(t > 0, t, 0.3 * t),
         "elu": lambda t: np.where(t > 0, t, 0.3 * np.expm1(np.minimum(t, 0)))}.get(
        name, lambda t: ref.activation(name, t))
    np.testing.assert_allclose(out.get(), f(expected_z), **tol(dtype))
    activations.forward_with_bias(ctx, name, z, cla.zeros(ctx.queue, 37, dtype), z, alpha)  # in place
    np.testing.assert_allclose(z.get(), f(expected_z), **tol(dtype))
    with pytest.raises(ValueError, match="an elementwise activation, not 'softmax'"):
        activations.forward_with_bias(ctx, "softmax", z, cla.zeros(ctx.queue, 37, dtype), z)


@pytest.mark.skipif(not blas.HAVE_CLBLAST, reason="pyclblast is not installed")
def test_clblast_products_are_replayed_in_the_recorded_passes(ctx, monkeypatch):
    """With CLBlast running the products, a training step's passes are still recorded: its GEMMs
    kept as calls in the plans and called again at replay; four SGD epochs equal numpy's."""
    from .test_network import random_network

    chosen = blas.settings(ctx, np.float64)
    monkeypatch.setattr(chosen, "small", "clblast")
    monkeypatch.setattr(chosen, "large", "clblast")
    net, params = random_network(ctx, np.float64, [4, 6, 3], ["tanh", "sigmoid"], seed=3)
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 4)), rng.uniform(size=(9, 3))
    training = clnet.TrainingNetwork(net, x)
    found = [clnet.sgd(training, y, "quadratic", epochs=1, learning_rate=0.3) for _ in range(4)]
    for epoch in range(4):
        params, expected_cost = ref.sgd_epoch(x, y, params, ["tanh", "sigmoid"], "quadratic", 0.3)
        assert found[epoch] == pytest.approx(expected_cost, rel=1e-12)
    for layer, (w, b) in zip(net.layers, params):
        np.testing.assert_allclose(layer.weights.get(), w, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(layer.bias.get(), b, rtol=1e-12, atol=1e-12)
    plans = [plan for plan in training._plans.values() if plan is not None]
    assert plans and all(plan.complete for plan in plans)
    assert any(global_size is None for plan in plans for _, global_size, _ in plan.launches)  # CLBlast calls
