"""The ops under the layers: activations, bias, GEMM, costs, SGD steps, against numpy."""

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.ops import activations, arrays, bias, blas, costs, updates

from . import reference as ref

Z = np.concatenate([[-100, -30, -5, -1, -1e-3, 0, 1e-3, 0.5, 1, 5, 5.999, 6.001, 30, 100], np.linspace(-8, 8, 37)])


def tolerance(dtype):
    return {"rtol": 2e-6, "atol": 1e-7} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-15}


def device(ctx, host, dtype=None):
    return cla.to_device(ctx.queue, np.ascontiguousarray(host, dtype=dtype))


@pytest.mark.parametrize("name", activations.ELEMENTWISE)
def test_activation_and_derivative_against_numpy(ctx, dtype, name):
    z = Z.astype(dtype)
    a = activations.forward(ctx, name, device(ctx, z), out=cla.empty(ctx.queue, z.shape, dtype)).get()
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, ref.activation(name, z), **tolerance(dtype))
    grad = cla.to_device(ctx.queue, np.full(z.shape, 3.0, dtype))
    activations.backward(ctx, name, device(ctx, z if activations.reads(name) == "z" else a), grad)
    # the derivative is computed from a = f(z); its rounding is f's rounding times f''
    np.testing.assert_allclose(grad.get(), 3 * ref.activation_derivative(name, z),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32 else 1e-13)


def test_activation_in_place_on_a_view(ctx, dtype):
    whole = device(ctx, np.arange(-5, 5, dtype=dtype))
    view = whole[2:7]
    assert activations.forward(ctx, "relu", view) is view
    np.testing.assert_array_equal(whole.get(), np.r_[-5, -4, 0, 0, 0, 0, 1, 2, 3, 4].astype(dtype))


def test_unknown_activation_lists_the_known_ones(ctx):
    with pytest.raises(ValueError, match="unknown activation 'swish'; choose one of linear, sigmoid, tanh"):
        activations.forward(ctx, "swish", cla.empty(ctx.queue, 3, np.float32))
    with pytest.raises(ValueError, match="unknown activation"):
        clnet.FullyConnected(3, "softsign")


@pytest.mark.parametrize("rows, cols", [(1, 1), (7, 13), (33, 5), (3, 100)])
def test_bias_broadcast_and_gradient(ctx, dtype, rows, cols):
    rng = np.random.default_rng(rows * cols)
    z, b = rng.normal(size=(rows, cols)).astype(dtype), rng.normal(size=cols).astype(dtype)
    z_dev = device(ctx, z)
    bias.add_bias(ctx, z_dev, device(ctx, b))
    np.testing.assert_array_equal(z_dev.get(), z + b[None, :])
    db = cla.to_device(ctx.queue, np.full(cols + 2, -1.0, dtype))
    bias.bias_gradient(ctx, device(ctx, z), db[1:cols + 1])
    np.testing.assert_allclose(db.get()[1:-1], z.astype(np.float64).sum(axis=0), **tolerance(dtype))
    assert db.get()[0] == -1 and db.get()[-1] == -1
    with pytest.raises(ValueError, match=rf"got z \({rows}, {cols}\) and b \({cols + 1},\)"):
        bias.add_bias(ctx, z_dev, cla.empty(ctx.queue, cols + 1, dtype))


@pytest.fixture(params=blas.BACKENDS)
def backend(request):
    if request.param == "clblast" and not blas.HAVE_CLBLAST:
        pytest.skip("pyclblast is not installed (pip install 'clnet[clblast]')")
    return request.param


@pytest.mark.parametrize("size", [1, 7, 33, 100])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_against_numpy(ctx, dtype, backend, size, trans_a, trans_b):
    rng = np.random.default_rng(size)
    m, n, k = size, size + 2, max(size - 1, 1)
    a = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
    c0 = rng.normal(size=(m, n)).astype(dtype)
    expected = 0.5 * (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b) + 2.0 * c0
    c = device(ctx, c0)
    blas.gemm(ctx, device(ctx, a), device(ctx, b), c, trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=2.0,
              backend=backend)
    scale = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c.get(), expected, rtol=scale, atol=scale * k)


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_on_views_with_offsets_and_row_strides(ctx, dtype, backend, trans_a, trans_b):
    """Row slices carry an offset, column slices a leading dimension larger than their width."""
    rng = np.random.default_rng(5)
    big_a, big_b = rng.normal(size=(40, 30)).astype(dtype), rng.normal(size=(35, 45)).astype(dtype)
    big_c = rng.normal(size=(50, 50)).astype(dtype)
    a_dev, b_dev, c_dev = device(ctx, big_a), device(ctx, big_b), device(ctx, big_c)
    m, n, k = 9, 11, 7
    a_rows, a_cols = ((k, m) if trans_a else (m, k))
    b_rows, b_cols = ((n, k) if trans_b else (k, n))
    a_view, a_host = a_dev[3:3 + a_rows, 2:2 + a_cols], big_a[3:3 + a_rows, 2:2 + a_cols]
    b_view, b_host = b_dev[5:5 + b_rows, 4:4 + b_cols], big_b[5:5 + b_rows, 4:4 + b_cols]
    c_view = c_dev[7:7 + m, 1:1 + n]
    blas.gemm(ctx, a_view, b_view, c_view, trans_a=trans_a, trans_b=trans_b, backend=backend)
    expected = big_c.astype(np.float64).copy()
    op_a, op_b = (a_host.T if trans_a else a_host), (b_host.T if trans_b else b_host)
    expected[7:7 + m, 1:1 + n] = op_a.astype(np.float64) @ op_b
    np.testing.assert_allclose(c_dev.get(), expected, **({"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {}))


def test_gemm_errors_name_both_shapes(ctx):
    a, b = cla.empty(ctx.queue, (3, 4), np.float32), cla.empty(ctx.queue, (5, 2), np.float32)
    c = cla.empty(ctx.queue, (3, 2), np.float32)
    with pytest.raises(ValueError, match=r"a \(3, 4\) @ b \(5, 2\) -> c \(3, 2\)"):
        blas.gemm(ctx, a, b, c)
    with pytest.raises(ValueError, match=r"a\.T \(4, 3\) @ b \(5, 2\)"):
        blas.gemm(ctx, a, b, c, trans_a=True)
    with pytest.raises(TypeError, match=r"one dtype.*a float32\(3, 4\), b float64\(4, 2\)"):
        blas.gemm(ctx, a, cla.empty(ctx.queue, (4, 2), np.float64), c)
    with pytest.raises(ValueError, match="2-D"):
        blas.gemm(ctx, a, cla.empty(ctx.queue, 8, np.float32), c)
    with pytest.raises(ValueError, match="row-major"):
        blas.gemm(ctx, cla.empty(ctx.queue, (4, 3), np.float32).T, cla.empty(ctx.queue, (4, 2), np.float32), c)
    with pytest.raises(TypeError, match="pyopencl.array.Array"):
        blas.gemm(ctx, np.zeros((3, 4), np.float32), a, c)


def test_gemm_beta_zero_ignores_nan_in_c(ctx, backend):
    """With beta = 0, C is overwritten, as BLAS defines it: NaN already in C must not leak."""
    c = device(ctx, np.full((9, 20), np.nan, np.float32))
    a, b = np.ones((9, 3), np.float32), np.ones((3, 20), np.float32)
    blas.gemm(ctx, device(ctx, a), device(ctx, b), c, backend=backend)
    np.testing.assert_array_equal(c.get(), np.full((9, 20), 3.0, np.float32))


def test_gemm_larger_than_a_tile_in_every_direction(ctx, dtype, backend):
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(130, 70)).astype(dtype), rng.normal(size=(70, 45)).astype(dtype)
    c = cla.empty(ctx.queue, (130, 45), dtype)
    blas.gemm(ctx, device(ctx, a), device(ctx, b), c, backend=backend)
    scale = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c.get(), a.astype(np.float64) @ b, rtol=scale, atol=scale * 70)


@pytest.mark.parametrize("rows, width", [(6, None), (4, 16), (3, 16), (5, 8), (4, 4)])
@pytest.mark.parametrize("trans_a, trans_b", [(False, True), (True, False)])
def test_every_tile_shape_of_clnets_gemm(ctx, dtype, rows, width, trans_a, trans_b):
    """The tiles clnet tune may choose, 256- and 512-bit vectors, at sizes that leave partial tiles."""
    from clnet.ops.tiled_gemm import TileParams

    if width and width > ctx.info.native_width(dtype) and ctx.info.native_float_width >= 16:
        pytest.skip("PoCL 3.0 builds 512-bit tiles wrong, or crashes, on AMD's AVX-512 CPUs: clnet keeps to 256 bits")
    settings = blas.settings(ctx, dtype)
    saved = settings.tiles
    settings.tiles = TileParams(rows, 16, width)
    try:
        rng = np.random.default_rng(rows)
        a = rng.normal(size=(37, 23) if trans_a else (23, 37)).astype(dtype)
        b = rng.normal(size=(41, 37) if trans_b else (37, 41)).astype(dtype)
        c = cla.empty(ctx.queue, (23, 41), dtype)
        blas.gemm(ctx, device(ctx, a), device(ctx, b), c, trans_a=trans_a, trans_b=trans_b, backend="clnet")
    finally:
        settings.tiles = saved
    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    scale = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c.get(), expected, rtol=scale, atol=scale * 40)


def test_unknown_backend(ctx):
    a = cla.empty(ctx.queue, (2, 2), np.float32)
    with pytest.raises(ValueError, match="unknown GEMM backend 'mkl'; choose one of clblast, clnet"):
        blas.gemm(ctx, a, a, a, backend="mkl")


def test_gemm_with_an_empty_inner_dimension_scales_c(ctx):
    c = device(ctx, np.ones((2, 3), np.float32))
    blas.gemm(ctx, cla.empty(ctx.queue, (2, 0), np.float32), cla.empty(ctx.queue, (0, 3), np.float32), c, beta=0.5)
    np.testing.assert_array_equal(c.get(), np.full((2, 3), 0.5, np.float32))


@pytest.mark.parametrize("cost, activation", [("quadratic", "sigmoid"), ("quadratic", "linear"), ("mae", "linear"),
                                              ("huber", "linear"), ("mse", "tanh"),
                                              ("cross_entropy", "sigmoid"), ("cross_entropy", "softmax"),
                                              ("cross_entropy", "log_softmax")])
def test_cost_values_and_output_gradient(ctx, dtype, cost, activation):
    rng = np.random.default_rng(3)
    z = rng.normal(scale=2, size=(37, 5)).astype(dtype)
    if activation in ("softmax", "log_softmax"):
        y = rng.dirichlet(np.ones(5), size=37).astype(dtype)
    else:
        y = rng.uniform(0, 1, size=(37, 5)).astype(dtype)
    a = ref.apply(activation, z)
    a_dev, z_dev, y_dev = device(ctx, a, dtype), device(ctx, z), device(ctx, y)
    value = costs.value(ctx, cost, activation, a_dev, z_dev, y_dev)
    expected = ref.cost(cost, a.astype(np.float64), y, activation)
    np.testing.assert_allclose(value, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # dC/dz: (p - y) / batch with p = a, or exp(a) after a log_softmax (a = ln p); both delta kernels
    p = np.exp(a.astype(dtype).astype(np.float64)) if activation == "log_softmax" else a.astype(dtype)
    d = a.astype(dtype).astype(np.float64) - y
    expected_delta = {"mse": 2 * d / d.size, "mae": np.sign(d) / d.size, "huber": np.clip(d, -1, 1) / d.size}.get(
        cost, (p - y) / 37)
    for fused in (False, True):
        delta = cla.empty(ctx.queue, a.shape, dtype)
        if fused:
            costs.value_into(ctx, cost, activation, a_dev, z_dev, y_dev, cla.empty(ctx.queue, 1, dtype), delta=delta)
        else:
            costs.output_delta(ctx, cost, a_dev, y_dev, delta, activation)
        np.testing.assert_allclose(delta.get(), expected_delta, **tolerance(dtype))


def test_cross_entropy_is_exact_where_the_activation_saturates(ctx, dtype):
    """From the logits: no ln 0, no inf, no floor, for logits of 1000."""
    z = np.array([[1000.0, 0.0, -1000.0], [-1000.0, 0.0, 1000.0]], dtype)
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype)
    a = activations.forward(ctx, "softmax", device(ctx, z), out=cla.empty(ctx.queue, z.shape, dtype))
    np.testing.assert_array_equal(a.get(), [[1, 0, 0], [0, 0, 1]])
    value = costs.value(ctx, "cross_entropy", "softmax", a, device(ctx, z), device(ctx, y))
    assert value == pytest.approx((1000 + 2000) / 2, rel=1e-6)  # -ln softmax: 1000 and 2000
    sig = activations.forward(ctx, "sigmoid", device(ctx, z), out=cla.empty(ctx.queue, z.shape, dtype))
    value = costs.value(ctx, "cross_entropy", "sigmoid", sig, device(ctx, z), device(ctx, y))
    # per row: softplus(z) - y z summed; row 1: 1000 + ln2 - 0 + 0 (y=1 on z=0 costs ln 2) ...
    expected = np.sum(np.logaddexp(0, z.astype(np.float64)) - y * z) / 2
    assert value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (33, 10)])
def test_softmax_and_its_backward_against_numpy(ctx, dtype, shape):
    rng = np.random.default_rng(shape[0])
    z = rng.normal(scale=3, size=shape).astype(dtype)
    z[0, 0] = 1000  # stays finite: the row's max is subtracted first
    a = activations.forward(ctx, "softmax", device(ctx, z)).get()
    np.testing.assert_allclose(a, ref.softmax(z), **tolerance(dtype))
    np.testing.assert_allclose(a.sum(axis=1), 1, rtol=1e-6 if dtype == np.float32 else 1e-14)
    g = rng.normal(size=shape).astype(dtype)
    g_dev = device(ctx, g)
    activations.backward(ctx, "softmax", device(ctx, a), g_dev)
    a64 = a.astype(np.float64)
    jacobian_product = a64 * (g - (g * a64).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(g_dev.get(), jacobian_product, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-7 if dtype == np.float32 else 1e-15)
    with pytest.raises(ValueError, match="rows of a \\(batch, outputs\\) array"):
        activations.forward(ctx, "softmax", cla.empty(ctx.queue, 5, dtype))


def test_cost_errors(ctx):
    with pytest.raises(ValueError, match="unknown cost 'hinge'; choose one of quadratic, mse, mae, huber, "
                                         "cross_entropy"):
        costs.check_cost("hinge", "sigmoid")
    with pytest.raises(ValueError, match="cross_entropy cost needs a sigmoid, softmax or log_softmax output layer, "
                                         "or a linear one .*, got 'tanh'"):
        costs.check_cost("cross_entropy", "tanh")
    a = cla.empty(ctx.queue, (2, 3), np.float32)
    with pytest.raises(ValueError, match=r"y must have shape \(2, 3\), got \(3, 2\)"):
        costs.value(ctx, "quadratic", "linear", a, None, cla.empty(ctx.queue, (3, 2), np.float32))


def test_sgd_step(ctx, dtype):
    w, g = np.linspace(-1, 1, 11).astype(dtype), np.linspace(3, -2, 11).astype(dtype)
    w_dev = device(ctx, w)
    updates.sgd_step(ctx, w_dev, device(ctx, g), 0.25)
    np.testing.assert_allclose(w_dev.get(), w - dtype.type(0.25) * g, **tolerance(dtype))


@pytest.mark.parametrize("size", [1, 15, 17, 1000, 300_007])  # a tail past whole vectors; several groups
@pytest.mark.parametrize("offset", [0, 3])
def test_all_finite_finds_every_non_finite_value(ctx, dtype, size, offset):
    host = np.random.default_rng(size).normal(size=size + offset)
    flat = device(ctx, host, dtype)
    a = flat[offset:]  # a view at an element offset
    assert arrays.all_finite(ctx, a)
    for position in sorted({0, size // 2, size - 1}):
        for bad in (np.nan, np.inf, -np.inf):
            changed = host.copy()
            changed[offset + position] = bad
            assert not arrays.all_finite(ctx, device(ctx, changed, dtype)[offset:]), (position, bad)
    if offset:  # a non-finite value just before the view is not the view's
        changed = host.copy()
        changed[offset - 1] = np.nan
        assert arrays.all_finite(ctx, device(ctx, changed, dtype)[offset:])


def test_the_gpu_shaped_kernels_refuse_what_they_cannot_take(ctx, monkeypatch):
    """Issue 25's new entry points name what is wrong: a strided x for column sums, strided
    arrays for the one-pass bias and activation, tiles that do not divide, a row activation in the
    GPU GEMM's epilogue, a work-group the kernel cannot run, and a device with no tile that fits."""
    from clnet.ops import local_gemm, tiled_gemm

    wide = cla.zeros(ctx.queue, (6, 8), np.float32)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        bias.column_sums(ctx, wide[:, :4], cla.zeros(ctx.queue, 4, np.float32))
    with pytest.raises(ValueError, match="z must be C-contiguous"):
        activations.forward_with_bias(ctx, "tanh", wide[:, :4], cla.zeros(ctx.queue, 4, np.float32),
                                      cla.zeros(ctx.queue, (6, 4), np.float32))
    with pytest.raises(ValueError, match="need whole numbers from 1 to 128 with wm \\| tm, wn \\| tn, tm, tn and tk "
                                         "multiples of 4"):
        local_gemm.LocalTiles(64, 64, 16, 3, 4).check()
    a, c = cla.zeros(ctx.queue, (4, 4), np.float32), cla.zeros(ctx.queue, (4, 4), np.float32)
    layouts = ((4, 0), (4, 0), (4, 0))
    tiles = local_gemm.LocalTiles(16, 16, 16, 4, 4)
    with pytest.raises(ValueError, match="epilogue takes elementwise activations by column, got 'softmax'"):
        local_gemm.gemm(ctx, a, a, c, m=4, n=4, k=4, trans_a=False, trans_b=True, layouts=layouts, alpha=1, beta=0,
                        tiles=tiles, epilogue=tiled_gemm.Epilogue(cla.zeros(ctx.queue, 4, np.float32), "softmax"))
    kernel = ctx.kernel("gemm_local.cl", "gemm_local", **local_gemm._template(np.dtype(np.float32), tiles, False,
                                                                               False, None))
    monkeypatch.setattr(kernel, "_limits", (8, (8, 8, 1)))
    monkeypatch.setattr(kernel, "_fitted", {})
    with pytest.raises(ValueError, match="need work-groups of 4 x 4; this kernel runs at most 8 work-items"):
        local_gemm.gemm(ctx, a, a, c, m=4, n=4, k=4, trans_a=False, trans_b=False, layouts=layouts, alpha=1, beta=0,
                        tiles=tiles)
    monkeypatch.setattr(local_gemm, "fits", lambda *args: False)
    with pytest.raises(ValueError, match="no local GEMM tile fits .*'s work-group limit"):
        local_gemm.default_tiles(ctx, np.dtype(np.float32))


def test_an_unreadable_device_check_file_is_ignored_with_a_warning(tmp_path, monkeypatch):
    from clnet.runtime import checks

    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path))
    (tmp_path / checks.FILE).write_text("{not json")
    with pytest.warns(UserWarning, match="ignoring the device checks in .*device-checks.json"):
        assert checks.load() == {}
