"""The portability suite: every kernel family at sizes that are not multiples of the vector
width or the work-group size, on views at odd offsets, and a few training steps, each against
numpy. It runs on the test device like every test, and on Oclgrind, which checks every memory
access and reports races and API errors (tests/test_oclgrind.py); sizes stay small because
Oclgrind interprets every work-item."""

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.ops import activations, bias, blas, costs, dense, local_gemm, memory, tiled_gemm, updates, winograd
from clnet.ops import dropout as dropout_op

from . import reference as ref

ODD = 13  # not a multiple of 4, 8 or the work-group size


def tol(dtype):
    return {"rtol": 2e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


def view(ctx, host, dtype, offset=3):
    """A device view of `host` that starts `offset` elements into its buffer."""
    flat = cla.zeros(ctx.queue, host.size + offset + 5, dtype)
    part = flat[offset:offset + host.size].reshape(host.shape)
    part.set(np.ascontiguousarray(host, dtype))
    return flat, part


def test_random_streams(ctx, dtype):
    g = clnet.Philox(ctx, 2**40 + 7, counter=5)
    flat, a = view(ctx, np.zeros(ODD * 3), dtype)
    g.uniform(a)
    np.testing.assert_array_equal(a.get(), ref.uniform01(2**40 + 7, 5, ODD * 3, dtype))
    g.counter = 5
    g.normal(a)
    np.testing.assert_array_equal(a.get(), ref.normal_exact(2**40 + 7, 5, ODD * 3, dtype))  # bit for bit
    assert not flat.get()[:3].any() and not flat.get()[3 + ODD * 3:].any()  # nothing outside the view
    words = cla.zeros(ctx.queue, ODD + 4, np.uint32)
    g.counter = 9
    g.raw(words[2:2 + ODD])
    np.testing.assert_array_equal(words.get()[2:2 + ODD], ref.raw(2**40 + 7, 9, ODD))


@pytest.mark.parametrize("name", activations.ACTIVATIONS)
def test_activations(ctx, dtype, name):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, ODD)) * 2
    _, zd = view(ctx, z, dtype)
    _, out = view(ctx, np.zeros_like(z), dtype, offset=1)
    activations.forward(ctx, name, zd, out)
    expected = ref.apply(name, z)
    np.testing.assert_allclose(out.get(), expected, **tol(dtype))
    g = rng.normal(size=z.shape)
    _, gd = view(ctx, g, dtype, offset=5)
    activations.backward(ctx, name, zd if activations.reads(name) == "z" else out, gd)
    np.testing.assert_allclose(gd.get(), ref.backward(name, z, expected, g), **tol(dtype))


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 7])
def test_streams_init_and_dropout_are_bit_identical_to_numpy(ctx, dtype, seed):
    """What DESIGN.md promises of every implementation (PoCL, Intel's runtime, Oclgrind): each
    stream, clnet.init and the dropout masks equal the numpy reference bit for bit."""
    a = cla.empty(ctx.queue, 10001, dtype)
    clnet.Philox(ctx, seed).normal(a)
    np.testing.assert_array_equal(a.get(), ref.normal_exact(seed, 0, 10001, dtype))
    clnet.Philox(ctx, seed, counter=3).uniform(a)
    np.testing.assert_array_equal(a.get(), ref.uniform01(seed, 3, 10001, dtype))
    words = cla.empty(ctx.queue, 4099, np.uint32)
    clnet.Philox(ctx, seed, counter=7).raw(words)
    np.testing.assert_array_equal(words.get(), ref.raw(seed, 7, 4099))
    ones = cla.to_device(ctx.queue, np.ones(ODD * 77, dtype))
    dropout_op.apply(ctx, ones, ones, 0.3, seed, 2, 9)
    np.testing.assert_array_equal(ones.get() != 0, ref.dropout_keep(seed, 2, 9, ODD * 77, 0.3))
    net = clnet.InferenceNetwork(ctx, 100, [clnet.FullyConnected(50, "tanh"), clnet.FullyConnected(3)],
                                 dtype=dtype, init=None)
    clnet.init(net, "xavier", seed=seed)
    std = dtype.type(np.sqrt(2 / 150))
    np.testing.assert_array_equal(net.layers[0].weights.get().ravel(), ref.normal_exact(seed, 0, 5000, dtype, std=std))


def test_bias_costs_and_memory(ctx, dtype):
    rng = np.random.default_rng(2)
    z, b = rng.normal(size=(3, ODD)), rng.normal(size=ODD)
    _, zd = view(ctx, z, dtype)
    _, bd = view(ctx, b, dtype, offset=1)
    bias.add_bias(ctx, zd, bd)
    np.testing.assert_allclose(zd.get(), z + b, **tol(dtype))
    bias.bias_gradient(ctx, zd, bd)
    np.testing.assert_allclose(bd.get(), (z + b).sum(axis=0), **tol(dtype))
    a, y = ref.activation("sigmoid", z), rng.uniform(size=z.shape)
    _, ad = view(ctx, a, dtype)
    _, yd = view(ctx, y, dtype, offset=2)
    _, zl = view(ctx, z, dtype, offset=1)
    out = cla.zeros(ctx.queue, 4, dtype)
    costs.value_into(ctx, "quadratic", "sigmoid", ad, zl, yd, out, 1)
    costs.value_into(ctx, "cross_entropy", "sigmoid", ad, zl, yd, out, 2)
    costs.matches_into(ctx, ad, yd, out, 3)
    np.testing.assert_allclose(out.get()[1:3], [ref.cost("quadratic", a, y), ref.cost("cross_entropy", a, y)],
                               **tol(dtype))
    assert out.get()[3] == np.sum(a.argmax(axis=1) == y.argmax(axis=1))
    _, delta = view(ctx, np.zeros_like(a), dtype, offset=4)
    costs.output_delta(ctx, "quadratic", ad, yd, delta)
    np.testing.assert_allclose(delta.get(), (a - y) / 3, **tol(dtype))
    _, fused = view(ctx, np.zeros_like(a), dtype, offset=1)
    costs.value_into(ctx, "cross_entropy", "sigmoid", ad, zl, yd, out, 0, delta=fused)  # one launch for both
    np.testing.assert_allclose(fused.get(), (a - y) / 3, **tol(dtype))
    np.testing.assert_allclose(out.get()[0], out.get()[2], **tol(dtype))
    memory.fill(ctx, delta, 0.5)
    memory.copy(ctx, ad, delta)
    np.testing.assert_allclose(delta.get(), a, **tol(dtype))
    indices = cla.to_device(ctx.queue, np.array([2, 0, 1, 2, 1], np.uint32))
    rows = cla.zeros(ctx.queue, (2, ODD), dtype)
    memory.gather_rows(ctx, ad, indices, 3, rows)
    np.testing.assert_allclose(rows.get(), a[[2, 1]], **tol(dtype))
    y3 = rng.normal(size=(3, 3))
    _, y3d = view(ctx, y3, dtype, offset=1)
    (flat_x, xb), (flat_y, yb) = view(ctx, np.zeros((2, ODD)), dtype, 2), view(ctx, np.zeros((2, 3)), dtype, 1)
    memory.gather_batch(ctx, ad, y3d, indices, 2, xb, yb)
    np.testing.assert_allclose(xb.get(), a[[1, 2]], **tol(dtype))
    np.testing.assert_allclose(yb.get(), y3[[1, 2]], **tol(dtype))
    assert not flat_x.get()[:2].any() and not flat_x.get()[2 + 2 * ODD:].any() and not flat_y.get()[7:].any()


def test_updates_and_dropout(ctx, dtype):
    rng = np.random.default_rng(3)
    w, g = rng.normal(size=ODD * 3), rng.normal(size=ODD * 3)
    _, wd = view(ctx, w, dtype)
    _, gd = view(ctx, g, dtype, offset=1)
    _, m = view(ctx, np.zeros_like(w), dtype, offset=2)
    _, v = view(ctx, np.zeros_like(w), dtype, offset=6)
    updates.sgd_step(ctx, wd, gd, 0.1, 0.01)
    expected = w - 0.1 * (g + 0.01 * w)
    np.testing.assert_allclose(wd.get(), expected, **tol(dtype))
    updates.momentum_step(ctx, wd, gd, m, 0.1, 0.9, 0.0, True)
    state = {}
    expected = ref.sgd_step(expected, g, state, 0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(wd.get(), expected, **tol(dtype))
    memory.fill(ctx, m, 0.0)
    updates.adam_step(ctx, wd, gd, m, v, step=1, learning_rate=0.01, beta1=0.9, beta2=0.999, eps=1e-8,
                      weight_decay=0.0)
    np.testing.assert_allclose(wd.get(), ref.adam_step(expected, g, {}, 0.01, 0.9, 0.999, 1e-8), **tol(dtype))
    _, src = view(ctx, np.arange(1.0, ODD * 3 + 1), dtype, offset=1)
    _, dst = view(ctx, np.zeros(ODD * 3), dtype, offset=3)
    dropout_op.apply(ctx, src, dst, 0.5, 11, 1, 2)
    keep = ref.dropout_keep(11, 1, 2, ODD * 3, 0.5)
    np.testing.assert_allclose(dst.get(), np.where(keep, np.arange(1.0, ODD * 3 + 1) * 2, 0), **tol(dtype))


@pytest.mark.parametrize("backend", blas.BACKENDS)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_gemm(ctx, dtype, backend, trans_a, trans_b):
    if backend == "clblast" and not blas.HAVE_CLBLAST:
        pytest.skip("pyclblast is not installed")
    rng = np.random.default_rng(4)
    m, n, k = 5, ODD, 7
    a = rng.normal(size=(k, m) if trans_a else (m, k))
    b = rng.normal(size=(n, k) if trans_b else (k, n))
    _, ad = view(ctx, a, dtype, offset=3)
    _, bd = view(ctx, b, dtype, offset=1)
    flat, c = view(ctx, np.zeros((m, n)), dtype, offset=2)
    blas.gemm(ctx, ad, bd, c, trans_a=trans_a, trans_b=trans_b, backend=backend)
    np.testing.assert_allclose(c.get(), (a.T if trans_a else a) @ (b.T if trans_b else b), rtol=1e-4 if
                               dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)
    assert not flat.get()[:2].any() and not flat.get()[2 + m * n:].any()


@pytest.mark.parametrize("stride, ratio", [(0, 1000), (1 << 30, 0)])  # everything packed; out.T = W @ x.T
def test_fused_layer_passes_on_clnet_gemm(ctx, dtype, monkeypatch, stride, ratio):
    monkeypatch.setattr(tiled_gemm, "IN_PLACE_STRIDE", stride)
    monkeypatch.setattr(dense, "TRANSPOSE_RATIO", ratio)
    chosen = blas.settings(ctx, dtype)
    monkeypatch.setattr(chosen, "small", "clnet")
    monkeypatch.setattr(chosen, "large", "clnet")
    rng = np.random.default_rng(6)
    x, w, b = rng.normal(size=(5, 7)), rng.normal(size=(ODD, 7)) / 3, rng.normal(size=ODD)
    (_, xd), (_, wd), (_, bd) = view(ctx, x, dtype, 1), view(ctx, w, dtype, 2), view(ctx, b, dtype, 3)
    for name, n in (("tanh", ODD), ("softmax", 3)):
        flat, out = view(ctx, np.zeros((5, n)), dtype, offset=2)
        _, z = view(ctx, np.zeros((5, n)), dtype, offset=1)
        dense.forward(ctx, xd, wd[:n], bd[:n], name, out, z)
        expected_z = x @ w[:n].T + b[:n]
        np.testing.assert_allclose(z.get(), expected_z, **tol(dtype))
        expected = ref.softmax(expected_z) if name == "softmax" else ref.activation(name, expected_z)
        np.testing.assert_allclose(out.get(), expected, **tol(dtype))
        assert not flat.get()[:2].any() and not flat.get()[2 + out.size:].any()
    g = rng.normal(size=(5, ODD))
    _, gd = view(ctx, g, dtype, offset=4)
    _, db = view(ctx, np.zeros(ODD), dtype, offset=1)
    _, a = view(ctx, np.tanh(x @ w.T + b), dtype, offset=2)
    dense.backward_bias(ctx, "tanh", a, gd, db)
    expected = g * (1 - np.tanh(x @ w.T + b) ** 2)
    np.testing.assert_allclose(gd.get(), expected, **tol(dtype))
    np.testing.assert_allclose(db.get(), expected.sum(axis=0), **tol(dtype))
    for trans_a, trans_b in ((False, False), (True, False), (False, True)):
        a = rng.normal(size=(ODD, 5) if trans_a else (5, ODD))
        bm = rng.normal(size=(9, ODD) if trans_b else (ODD, 9))
        (_, ad), (_, bmd) = view(ctx, a, dtype, 3), view(ctx, bm, dtype, 1)
        flat, c = view(ctx, np.zeros((5, 9)), dtype, offset=2)
        blas.gemm(ctx, ad, bmd, c, trans_a=trans_a, trans_b=trans_b)
        np.testing.assert_allclose(c.get(), (a.T if trans_a else a) @ (bm.T if trans_b else bm), **tol(dtype))
        assert not flat.get()[:2].any() and not flat.get()[2 + c.size:].any()


@pytest.mark.parametrize("tiles", local_gemm.CANDIDATES, ids=lambda t: "{tm}x{tn}x{tk}/{wm}x{wn}".format(**t.as_dict()))
def test_the_gpu_gemm_and_its_fused_forward_pass(ctx, dtype, monkeypatch, tiles):
    """clnet's GPU kernel (the "clnet_gpu" backend) with each of its tile shapes that fits the
    device: products over several tiles with ragged edges, views with offsets; for the first
    (the default) every orientation and the fused forward pass (bias, a parametrized activation,
    the logits kept). Each variant is a build: the others take the dense layer's orientation."""
    if not local_gemm.fits(ctx, dtype, tiles):
        pytest.skip(f"{tiles} does not fit {ctx.info.name}'s work-group limit")
    chosen = blas.settings(ctx, dtype)
    for name, value in (("small", "clnet_gpu"), ("large", "clnet_gpu"), ("local", tiles)):
        monkeypatch.setattr(chosen, name, value)
    rng = np.random.default_rng(8)
    m, n, k = 70, 37, 19
    first = tiles == local_gemm.CANDIDATES[0]
    for trans_a, trans_b in ((False, False), (True, False), (False, True), (True, True)) if first else ((False, True),):
        a = rng.normal(size=(k, m) if trans_a else (m, k))
        b = rng.normal(size=(n, k) if trans_b else (k, n))
        c0 = rng.normal(size=(m, n))
        (_, ad), (_, bd) = view(ctx, a, dtype, 3), view(ctx, b, dtype, 1)
        flat, c = view(ctx, c0, dtype, offset=2)
        blas.gemm(ctx, ad, bd, c, trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=-2.0)
        expected = 0.5 * (a.T if trans_a else a) @ (b.T if trans_b else b) - 2 * c0
        np.testing.assert_allclose(c.get(), expected, **tol(dtype))
        assert not flat.get()[:2].any() and not flat.get()[2 + c.size:].any()
    if not first:
        return
    x, w, bias_ = rng.normal(size=(m, k)), rng.normal(size=(n, k)) / 3, rng.normal(size=n)
    (_, xd), (_, wd), (_, biasd) = view(ctx, x, dtype, 1), view(ctx, w, dtype, 2), view(ctx, bias_, dtype, 3)
    assert dense.fuses_forward(ctx, dtype, "leaky_relu", m, n, k) and not dense.fuses_forward(ctx, dtype, "softmax",
                                                                                              m, n, k)
    _, out = view(ctx, np.zeros((m, n)), dtype, offset=2)
    _, z = view(ctx, np.zeros((m, n)), dtype, offset=1)
    dense.forward(ctx, xd, wd, biasd, "leaky_relu", out, z, alpha=0.2)
    expected_z = x @ w.T + bias_
    np.testing.assert_allclose(z.get(), expected_z, **tol(dtype))
    np.testing.assert_allclose(out.get(), np.where(expected_z > 0, expected_z, 0.2 * expected_z), **tol(dtype))


@pytest.mark.parametrize("rows, cols", [(1, 1), (9, 10), (300, 10), (130, 37)])
def test_gpu_shaped_column_sums(ctx, dtype, rows, cols):
    """bias.column_sums (what GPUs run for bias gradients): chunks of rows reduced in local
    trees, then the chunks' sums; on a view with an offset, nothing written outside db."""
    x = np.random.default_rng(rows).normal(size=(rows, cols))
    _, xd = view(ctx, x, dtype, offset=3)
    flat, db = view(ctx, np.zeros(cols), dtype, offset=1)
    bias.bias_gradient(ctx, xd, db, gpu_shaped=True)
    np.testing.assert_allclose(db.get(), x.sum(axis=0), **tol(dtype))
    assert not flat.get()[:1].any() and not flat.get()[1 + cols:].any()


def test_a_few_training_steps(ctx, dtype):
    rng = np.random.default_rng(5)
    x, labels = rng.normal(size=(ODD, 6)), rng.integers(0, 3, ODD)
    net = clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(5, "tanh", dropout=0.25),
                                          clnet.FullyConnected(3, "softmax")], dtype=dtype, seed=1)
    history = net.fit(x, labels, "cross_entropy", epochs=2, batch_size=5, optimizer=clnet.Adam(0.01), seed=2,
                      progress=False, validation=(x[:4], labels[:4]))
    assert len(history) == 2 and np.isfinite(history).all() and len(history.validation_cost) == 2
    small = clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(4, "relu"), clnet.FullyConnected(2, "sigmoid")],
                                   dtype=dtype)
    params = [(la.weights.get().astype(np.float64), la.bias.get().astype(np.float64)) for la in small.layers]
    y = rng.uniform(size=(ODD, 2))
    clnet.sgd(clnet.TrainingNetwork(small, x), y, epochs=2, learning_rate=0.1)
    for _ in range(2):
        params, _ = ref.sgd_epoch(x.astype(dtype), y, params, ["relu", "sigmoid"], "quadratic", 0.1)
    close = tol(dtype) if dtype == np.float64 else {"rtol": 1e-4, "atol": 1e-5}
    for layer, (w, b) in zip(small.layers, params):
        np.testing.assert_allclose(layer.weights.get(), w, **close)
        np.testing.assert_allclose(layer.bias.get(), b, **close)


def test_the_device_is_named(ctx, capsys):
    with capsys.disabled():  # tests/test_oclgrind.py reads this line
        print(f"\nportable suite on: {ctx.info.name} ({ctx.info.platform}), work-group limit "
              f"{ctx.info.max_work_group_size}, GEMM {clnet.ops.blas.settings(ctx, 'float32').large}")


CNN_LAYERS = {  # issue 21's kernels at small, odd sizes: (layer, PyTorch module, sample shape, batch)
    "conv": (lambda: clnet.Conv2d(3, 3, stride=2, padding=1, activation="tanh"), "Conv2d(2, 3, 3, stride=2, padding=1)",
             (2, 5, 6), 2),
    # stride 1 on rows as wide as a register tile's 10 of 16 columns: conv_direct with the gemm "clnet", its
    # filters' gradient from the padded images (kernels/conv_direct.cl), the lines cut into parts
    "conv direct": (lambda: clnet.Conv2d(3, 3, padding=(1, 2), activation="tanh"), "Conv2d(2, 3, 3, padding=(1, 2))",
                    (2, 4, 9), 3),
    # Winograd's F(2x2, 3x3) where the GEMM is clnet's (its channel minimum lowered to these 2 -> 5):
    # the forward pass and dC/dx by kernels/winograd.cl, the filters' gradient from padded images (rows of 7)
    "conv winograd": (lambda: clnet.Conv2d(5, 3, padding=1, activation="tanh"), "Conv2d(2, 5, 3, padding=1)",
                      (2, 5, 7), 2),
    "depthwise": (lambda: clnet.Conv2d(4, 2, padding="same", groups=2), "Conv2d(2, 4, 2, padding='same', groups=2)",
                  (2, 5, 3), 1),
    "depthwise s2": (lambda: clnet.Conv2d(3, 3, stride=2, padding=1, groups=3),
                     "Conv2d(3, 3, 3, stride=2, padding=1, groups=3)", (3, 5, 6), 2),
    "max pool": (lambda: clnet.MaxPool2d(3, stride=2, padding=1), "MaxPool2d(3, stride=2, padding=1)", (2, 5, 6), 2),
    "avg pool": (lambda: clnet.AvgPool2d(2), "AvgPool2d(2)", (3, 5, 4), 2),
    "global avg": (lambda: clnet.GlobalAvgPool2d(), "AdaptiveAvgPool2d(1)", (3, 3, 5), 2),
    "ceil max pool": (lambda: clnet.MaxPool2d(3, stride=2, ceil_mode=True), "MaxPool2d(3, 2, ceil_mode=True)",
                      (2, 6, 5), 2),
    "ceil avg pool": (lambda: clnet.AvgPool2d(2, stride=2, padding=1, ceil_mode=True),
                      "AvgPool2d(2, 2, padding=1, ceil_mode=True)", (2, 5, 6), 2),
    "adaptive avg": (lambda: clnet.AdaptiveAvgPool2d((3, 2)), "AdaptiveAvgPool2d((3, 2))", (2, 5, 7), 2),
    "batch norm": (lambda: clnet.BatchNorm(), "BatchNorm2d(3)", (3, 2, 5), 2),
    "batch norm 1d": (lambda: clnet.BatchNorm(), "BatchNorm1d(ODD)", (ODD,), 3),
    "layer norm": (lambda: clnet.LayerNorm(ODD), "LayerNorm(ODD)", (2, ODD), 2),
}


def test_merges_of_branches(ctx, dtype):
    """kernels/merge.cl (where blocks' branches meet) on views at odd offsets, against numpy."""
    from clnet.ops import merge

    rng = np.random.default_rng(4)
    a, b, g = rng.normal(size=(3, 2, ODD)), rng.normal(size=(3, 2, ODD)), rng.normal(size=(3, 2))
    (_, ad), (_, bd), (_, gd) = view(ctx, a, dtype), view(ctx, b, dtype, 2), view(ctx, g, dtype, 1)
    _, out = view(ctx, np.zeros_like(a), dtype, 5)
    merge.add(ctx, ad, bd, out)
    np.testing.assert_allclose(out.get(), a + b, **tol(dtype))
    merge.multiply(ctx, ad, bd, out)
    np.testing.assert_allclose(out.get(), a * b, **tol(dtype))
    merge.scale_runs(ctx, ad, gd, out)
    np.testing.assert_allclose(out.get(), a * g[..., None], **tol(dtype))
    _, dots = view(ctx, np.zeros_like(g), dtype, 3)
    merge.run_dots(ctx, ad, bd, dots)
    np.testing.assert_allclose(dots.get(), (a * b).sum(axis=2), **tol(dtype))
    _, wide = view(ctx, np.zeros((3, 5, ODD)), dtype, 7)
    merge.copy_columns(ctx, ad, wide, 0, 2 * ODD, 2 * ODD)  # into channels 2..3 of 5
    np.testing.assert_allclose(wide.get()[:, 2:4], a, **tol(dtype))
    assert not wide.get()[:, :2].any() and not wide.get()[:, 4:].any()


def test_cross_entropy_on_logits(ctx, dtype):
    """A linear output's cross-entropy: softmax's value and gradient from the logits (one work-item
    per row), and sigmoid's for one output."""
    rng = np.random.default_rng(6)
    for cols in (ODD, 1):
        z, labels = rng.normal(size=(5, cols)) * 3, rng.integers(0, max(cols, 2), 5)
        y = np.eye(cols)[labels] if cols > 1 else labels[:, None].astype(float)
        (_, zd), (_, yd) = view(ctx, z, dtype), view(ctx, y, dtype, 2)
        _, delta = view(ctx, np.zeros_like(z), dtype, 1)
        out = cla.zeros(ctx.queue, 2, dtype)
        costs.value_into(ctx, "cross_entropy", "linear", zd, zd, yd, out, 1, delta=delta)
        p = ref.softmax(z) if cols > 1 else 1 / (1 + np.exp(-z))
        value = -(y * np.log(p)).sum() / 5 if cols > 1 else -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum() / 5
        np.testing.assert_allclose(out.get()[1], value, **tol(dtype))
        np.testing.assert_allclose(delta.get(), (p - y) / 5, **tol(dtype))


@pytest.mark.parametrize("gemm", ["the device's", "clnet"])  # clnet's: conv_direct on every device
@pytest.mark.parametrize("name", CNN_LAYERS)
def test_cnn_layers(ctx, dtype, monkeypatch, name, gemm):
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    from .layer_check import compare

    if gemm == "clnet":
        chosen = blas.settings(ctx, dtype)
        monkeypatch.setattr(chosen, "small", "clnet")
        monkeypatch.setattr(chosen, "large", "clnet")

        monkeypatch.setattr(tiled_gemm, "k_parts", lambda *args: 2)  # every product of a long k: in parts
        monkeypatch.setattr(winograd, "MIN_CHANNELS", 1 if name == "conv winograd" else 1 << 30)
    make, module, shape, batch = CNN_LAYERS[name]
    activation = torch.tanh if name.startswith("conv") else (lambda t: t)
    compare(ctx, make(), eval(f"torch.nn.{module}", {"torch": torch, "ODD": ODD}), shape, batch, dtype,
            activation=activation, steps=2)


def numpy_attention(x, arrays, heads, causal):
    """Multi-head self-attention written out in numpy (PyTorch's definition)."""
    batch, seq, width = x.shape
    size = width // heads
    q, k, v = np.split(x @ arrays["in_proj_weight"].T + arrays["in_proj_bias"], 3, axis=-1)
    out = np.zeros_like(x)
    for h in range(heads):
        part = slice(h * size, (h + 1) * size)
        scores = q[..., part] @ k[..., part].transpose(0, 2, 1) / np.sqrt(size)
        if causal:
            scores[:, np.triu(np.ones((seq, seq), bool), 1)] = -np.inf
        p = np.exp(scores - scores.max(axis=-1, keepdims=True))
        out[..., part] = (p / p.sum(axis=-1, keepdims=True)) @ v[..., part]
    return out @ arrays["out_proj_weight"].T + arrays["out_proj_bias"]


@pytest.mark.parametrize("tiles", ["the device's", "CPU's"])  # register tiles: Oclgrind checks a CPU's too
@pytest.mark.parametrize(("causal", "width", "heads"), [(False, 15, 3), (True, 15, 3), (True, 32, 2)])
def test_sequence_layers(ctx, dtype, causal, width, heads, tiles, monkeypatch):
    """Embedding, positional embedding, attention (3 heads of 5: no vector width divides them; 2
    of 16: whole vectors; seq 10) and the mean over positions: the forward pass against numpy; the
    backward pass's dC/d(embedded) against central differences of the numpy forward, and the
    tables' gradients as its sums (over the batch, and by id)."""
    from clnet.ops import attention as attention_op

    if tiles == "CPU's":
        monkeypatch.setattr(attention_op, "register_tiles", lambda ctx: (attention_op.CPU_ROWS, attention_op.CPU_VECS))
    vocab, seq = 11, 10  # rows of 10: a vector of 8 and a rest
    net = clnet.InferenceNetwork(ctx, seq, [clnet.Embedding(vocab, width), clnet.PositionalEmbedding(),
                                            clnet.MultiHeadAttention(heads, causal=causal), clnet.SequenceMean()],
                                 dtype=dtype, seed=3)
    host = {name: a.astype(np.float64) for name, a in net.host_arrays().items()}
    attention = {k: host[f"layer_2.{k}"] for k in ("in_proj_weight", "in_proj_bias", "out_proj_weight",
                                                    "out_proj_bias")}
    ids = np.random.default_rng(2).integers(0, vocab, (3, seq))
    embedded = host["layer_0.weight"][ids] + host["layer_1.weight"]
    np.testing.assert_allclose(net(ids).get(), numpy_attention(embedded, attention, heads, causal).mean(axis=1),
                               **tol(dtype))
    training = clnet.TrainingNetwork(net, ids)
    training.forward()
    g = np.random.default_rng(3).normal(size=(3, width))
    training.output_gradient.set(g.astype(dtype))
    training.backward()
    d_embedded = training.layers[0].delta.get().astype(np.float64)  # the positional layer's, in place

    def cost(x):
        return (numpy_attention(x, attention, heads, causal).mean(axis=1) * g).sum()

    for where in [(0, 0, 0), (1, 3, 7), (2, 9, width - 1), (2, 2, 4)]:
        step = np.zeros_like(embedded)
        step[where] = 1e-5
        expected = (cost(embedded + step) - cost(embedded - step)) / 2e-5
        assert d_embedded[where] == pytest.approx(expected, rel=1e-6 if dtype == np.float64 else 2e-3, abs=1e-7)
    grads = dict(zip(net._names(trainable=True), net.gradient_buffer.get()))
    np.testing.assert_allclose(grads["layer_1.weight"], d_embedded.sum(axis=0), **tol(dtype))
    table = np.zeros((vocab, width))
    np.add.at(table, ids, d_embedded)
    np.testing.assert_allclose(grads["layer_0.weight"], table, **tol(dtype))
    np.testing.assert_allclose(grads["layer_2.out_proj_bias"], g.sum(axis=0), **tol(dtype))


def test_costs_with_a_label_per_position(ctx, dtype):
    """Cross-entropy of (batch, seq, classes) logits with (batch, seq) labels, its gradient and the
    positions predicted right, on views at odd offsets."""
    rng = np.random.default_rng(8)
    z, labels = rng.normal(size=(3, 5, ODD)) * 2, rng.integers(0, ODD, (3, 5))
    (_, zd), (_, yd) = view(ctx, z, dtype), view(ctx, labels.astype(float), dtype, 2)
    _, delta = view(ctx, np.zeros_like(z), dtype, 1)
    out = cla.zeros(ctx.queue, 3, dtype)
    costs.value_into(ctx, "cross_entropy", "linear", zd, zd, yd, out, 1, delta=delta)
    costs.matches_into(ctx, zd, yd, out, 2)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    picked = np.take_along_axis(p, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(out.get()[1], -np.log(picked).mean(), **tol(dtype))
    np.testing.assert_allclose(delta.get(), (p - np.eye(ODD)[labels]) / 15, **tol(dtype))
    assert out.get()[2] == (z.argmax(axis=-1) == labels).sum()
