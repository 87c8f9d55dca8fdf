"""Products whose k is cut into parts (clnet's GEMM, ops/tiled_gemm.k_parts and kernels/split_k.cl):
every layout of op(A) and op(B), alpha and beta, against numpy, and the same bits on every run."""

import numpy as np
import pyopencl.array as cla
import pytest

from clnet.ops import blas, tiled_gemm


def device(ctx, host):
    return cla.to_device(ctx.queue, np.ascontiguousarray(host))


def operands(rng, dtype, m, n, k, trans_a, trans_b, wide_a):
    """a and b as the product reads them; wide_a: a is a view with rows 700 elements apart, so that a
    transposed a is packed first (tiled_gemm.IN_PLACE_STRIDE)."""
    a_shape = (k, m) if trans_a else (m, k)
    a = rng.normal(size=a_shape).astype(dtype)
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
    return a, b, a_shape


@pytest.mark.parametrize("parts", [2, 7])
@pytest.mark.parametrize("trans_a, trans_b, wide_a", [(False, False, False), (False, True, False),
                                                      (True, False, False), (True, True, True)])
def test_a_product_cut_into_parts_equals_numpys(ctx, dtype, monkeypatch, parts, trans_a, trans_b, wide_a):
    m, n, k = 23, 19, 1001  # partial tiles both ways; k not a multiple of the parts
    rng = np.random.default_rng(parts)
    a, b, a_shape = operands(rng, dtype, m, n, k, trans_a, trans_b, wide_a)
    if wide_a:
        wide = np.zeros((a_shape[0], 700), dtype)
        wide[:, 3:3 + a_shape[1]] = a
        a_device = device(ctx, wide)[:, 3:3 + a_shape[1]]
    else:
        a_device = device(ctx, a)
    c0 = rng.normal(size=(m, n)).astype(dtype)
    asked = []
    monkeypatch.setattr(tiled_gemm, "k_parts", lambda *args: asked.append(args) or parts)
    results = []
    for _ in range(2):
        c = device(ctx, c0)
        blas.gemm(ctx, a_device, device(ctx, b), c, trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=2.0,
                  backend="clnet")
        results.append(c.get())
    assert asked, "the product was not cut"
    expected = 0.5 * ((a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)) + 2.0 * c0
    scale = 2e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(results[0], expected, rtol=scale, atol=scale * 40)
    np.testing.assert_array_equal(results[0], results[1])


def test_beta_zero_ignores_nan_in_c_when_cut(ctx, monkeypatch):
    monkeypatch.setattr(tiled_gemm, "k_parts", lambda *args: 3)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 2000)).astype(np.float32), rng.normal(size=(2000, 4)).astype(np.float32)
    c = device(ctx, np.full((5, 4), np.nan, np.float32))
    blas.gemm(ctx, device(ctx, a), device(ctx, b), c, backend="clnet")
    np.testing.assert_allclose(c.get(), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)


def test_the_parts_rule_cuts_only_long_products_with_few_tiles():
    tiles = tiled_gemm.TileParams(6, 16, 8)  # 6 x 16 tiles
    parts = tiled_gemm.k_parts(25, 6, 50176, tiles, np.float32, 2)  # LeNet's first filter gradient: 5 tiles
    assert parts == -(-tiled_gemm.GROUPS_PER_UNIT * 2 // 5)
    assert tiled_gemm.k_parts(288, 32, 8192, tiles, np.float32, 2) == 1  # 96 tiles: enough groups
    assert tiled_gemm.k_parts(25, 6, 3 * tiled_gemm.PART_MIN_STEPS - 1, tiles, np.float32, 2) == 2
    assert tiled_gemm.k_parts(25, 6, tiled_gemm.PART_MIN_STEPS - 1, tiles, np.float32, 2) == 1
