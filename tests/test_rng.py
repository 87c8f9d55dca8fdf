"""Philox4x32-10 and the fills built on it, against Random123's vectors and a numpy reference."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pyopencl.array as cla
import pytest
from scipy import stats

import clnet
from clnet.ops import rng

from . import reference as ref

KAT_FILE = Path(__file__).parent / "data" / "philox_kat_vectors.txt"
SENTINEL = -7.0


def kat_vectors():
    rows = [line.split() for line in KAT_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    words = np.array([[int(x, 16) for x in row[:6] + row[7:11]] for row in rows], dtype=np.uint64)
    return words[:, :4].astype(np.uint32), words[:, 4:6].astype(np.uint32), words[:, 6:].astype(np.uint32)


def test_known_answer_vectors(ctx):
    counters, keys, expected = kat_vectors()
    assert len(expected) == 55
    np.testing.assert_array_equal(ref.philox4x32_10(counters, keys), expected)  # the oracle itself
    out = rng.philox4x32(ctx, counters, keys)
    assert isinstance(out, cla.Array) and out.shape == (55, 4) and out.dtype == np.uint32
    np.testing.assert_array_equal(out.get(), expected)
    # device inputs, as views with an offset
    c_dev = cla.to_device(ctx.queue, np.vstack([np.zeros((3, 4), np.uint32), counters]))[3:]
    k_dev = cla.to_device(ctx.queue, np.vstack([np.zeros((1, 2), np.uint32), keys]))[1:]
    np.testing.assert_array_equal(rng.philox4x32(ctx, c_dev, k_dev).get(), expected)


def padded(ctx, n, dtype, before=3, after=5):
    """A device array of n elements inside a larger one filled with a sentinel."""
    fill = np.uint32(0xDEADBEEF) if np.dtype(dtype) == np.uint32 else SENTINEL
    whole = cla.to_device(ctx.queue, np.full(before + n + after, fill, dtype=dtype))
    return whole, whole[before:before + n], fill


def check_untouched(whole, n, fill, before=3):
    host = whole.get()
    assert (host[:before] == fill).all() and (host[before + n:] == fill).all()
    return host[before:before + n]


SEEDS_COUNTERS = [(0, 0), (7, 0), (2**32 + 5, 2**32 - 3), (2**64 - 1, 2**64 - 2)]
LENGTHS = [1, 2, 3, 5, 31, 1003, 4099]


@pytest.mark.parametrize("seed, counter", SEEDS_COUNTERS)
def test_raw_matches_reference(ctx, seed, counter):
    for n in LENGTHS:
        whole, a, fill = padded(ctx, n, np.uint32)
        g = clnet.Philox(ctx, seed, counter=counter)
        assert g.raw(a) is a
        np.testing.assert_array_equal(check_untouched(whole, n, fill), ref.raw(seed, counter, n))


@pytest.mark.parametrize("seed, counter", SEEDS_COUNTERS)
def test_uniform_matches_reference_bit_for_bit(ctx, dtype, seed, counter):
    for n in LENGTHS:
        whole, a, fill = padded(ctx, n, dtype)
        clnet.Philox(ctx, seed, counter=counter).uniform(a)
        got = check_untouched(whole, n, fill)
        np.testing.assert_array_equal(got, ref.uniform01(seed, counter, n, dtype))
    whole, a, fill = padded(ctx, 1003, dtype)
    clnet.Philox(ctx, seed, counter=counter).uniform(a, low=-2.5, high=4.0)
    u = ref.uniform01(seed, counter, 1003, dtype)
    np.testing.assert_array_equal(check_untouched(whole, 1003, fill), dtype.type(-2.5) + dtype.type(6.5) * u)


@pytest.mark.parametrize("seed, counter", SEEDS_COUNTERS)
def test_normal_matches_reference(ctx, dtype, seed, counter):
    """Bit for bit the numpy computation of DESIGN.md's algorithm, and within a few float32 ulps
    of Box-Muller in float64 with numpy's log, sqrt, cos and sin."""
    tolerance = 5e-5 if dtype == np.float32 else 1e-12
    for n in LENGTHS:
        whole, a, fill = padded(ctx, n, dtype)
        clnet.Philox(ctx, seed, counter=counter).normal(a)
        got = check_untouched(whole, n, fill)
        np.testing.assert_array_equal(got, ref.normal_exact(seed, counter, n, dtype))
        np.testing.assert_allclose(got, ref.normal(seed, counter, n, dtype), rtol=0, atol=tolerance)
    whole, a, fill = padded(ctx, 1003, dtype)
    clnet.Philox(ctx, seed, counter=counter).normal(a, mean=3.0, std=0.25)
    got = check_untouched(whole, 1003, fill)
    np.testing.assert_array_equal(got, ref.normal_exact(seed, counter, 1003, dtype, mean=3.0, std=0.25))
    np.testing.assert_allclose(got, 3.0 + 0.25 * ref.normal(seed, counter, 1003, dtype), rtol=0, atol=tolerance)


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 7])
def test_normal_is_bit_identical_and_within_a_few_float32_ulps(ctx, dtype, seed):
    a = cla.empty(ctx.queue, 10001, dtype)
    clnet.Philox(ctx, seed).normal(a)
    got = a.get()
    np.testing.assert_array_equal(got.view(np.uint8), ref.normal_exact(seed, 0, 10001, dtype).view(np.uint8))
    float32_ulp = np.spacing(np.maximum(np.abs(ref.normal(seed, 0, 10001, dtype)), 1.0).astype(np.float32))
    assert np.max(np.abs(got - ref.normal(seed, 0, 10001, dtype)) / float32_ulp) < (5 if dtype == np.float32 else 1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 7])
def test_init_weights_are_bit_identical_to_the_reference(ctx, dtype, seed):
    """clnet.init("xavier") of a 100-50-3 network: each layer's weights are the next numbers of
    the stream, scaled by sqrt(2 / (inputs + outputs)) in the kernel."""
    net = clnet.InferenceNetwork(ctx, 100, [clnet.FullyConnected(50, "tanh"), clnet.FullyConnected(3, "sigmoid")],
                                 dtype=dtype, init=None)
    clnet.init(net, "xavier", seed=seed)
    counter = 0
    for layer, (inputs, outputs) in zip(net.layers, [(100, 50), (50, 3)]):
        n = inputs * outputs
        std = dtype.type(np.sqrt(2 / (inputs + outputs)))
        expected = ref.normal_exact(seed, counter, n, dtype, std=std).reshape(outputs, inputs)
        np.testing.assert_array_equal(layer.weights.get(), expected)
        counter += -(-n // (4 if dtype == np.float32 else 2))


def test_prefix_stability(ctx, dtype):
    for fill_name in ("uniform", "normal"):
        long = cla.empty(ctx.queue, 1000, dtype)
        getattr(clnet.Philox(ctx, 99, counter=12), fill_name)(long)
        for n in (1, 3, 7, 8, 9, 333):
            short = cla.empty(ctx.queue, n, dtype)
            getattr(clnet.Philox(ctx, 99, counter=12), fill_name)(short)
            np.testing.assert_array_equal(short.get(), long.get()[:n])


def test_counter_advances_past_each_fill(ctx, dtype):
    per_block = 4 if dtype == np.float32 else 2
    g = clnet.Philox(ctx, 1234, counter=10)
    first, second = cla.empty(ctx.queue, 5, dtype), cla.empty(ctx.queue, 7, dtype)
    g.uniform(first)
    assert g.counter == 10 + math.ceil(5 / per_block)
    g.uniform(second)
    assert g.counter == 10 + math.ceil(5 / per_block) + math.ceil(7 / per_block)
    np.testing.assert_array_equal(first.get(), ref.uniform01(1234, 10, 5, dtype))
    np.testing.assert_array_equal(second.get(), ref.uniform01(1234, 10 + math.ceil(5 / per_block), 7, dtype))
    words = cla.empty(ctx.queue, 6, np.uint32)
    g.raw(words)
    assert g.counter == 10 + math.ceil(5 / per_block) + math.ceil(7 / per_block) + 2
    # replay: setting the counter back gives the same numbers again
    g.counter = 10
    again = cla.empty(ctx.queue, 5, dtype)
    np.testing.assert_array_equal(g.uniform(again).get(), first.get())
    # the counter wraps at 2**64
    g.counter = 2**64 - 1
    g.uniform(cla.empty(ctx.queue, 3 * per_block, dtype))
    assert g.counter == 2


@pytest.mark.parametrize("lanes, wide_mulhi", [(1, False), (2, True), (4, True), (8, True)])
def test_same_numbers_for_any_work_item_layout(ctx, dtype, monkeypatch, lanes, wide_mulhi):
    if dtype == np.float64 and lanes == 8:
        pytest.skip("float64 uses at most 4 lanes (256-bit vectors)")
    monkeypatch.setattr(rng, "_variant", lambda ctx, dtype: {"lanes": lanes, "wide_mulhi": wide_mulhi})
    n = 1237
    for local_size in (1, 3, 64, 256):
        g = clnet.Philox(ctx, 555, counter=2**32 - 7)
        u, z, w = cla.empty(ctx.queue, n, dtype), cla.empty(ctx.queue, n, dtype), cla.empty(ctx.queue, n, np.uint32)
        g.uniform(u, local_size=local_size)
        g.normal(z, local_size=local_size)
        g.raw(w, local_size=local_size)
        per_block = 4 if dtype == np.float32 else 2
        blocks = math.ceil(n / per_block)
        np.testing.assert_array_equal(u.get(), ref.uniform01(555, 2**32 - 7, n, dtype))
        tolerance = 5e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(z.get(), ref.normal(555, 2**32 - 7 + blocks, n, dtype), rtol=0, atol=tolerance)
        np.testing.assert_array_equal(w.get(), ref.raw(555, 2**32 - 7 + 2 * blocks, n))


def test_uniform_is_strictly_inside_the_unit_interval(ctx, dtype):
    u = clnet.Philox(ctx, 3).uniform(cla.empty(ctx.queue, 1_000_000, dtype)).get()
    assert 0 < u.min() and u.max() < 1


def test_largest_word_gives_the_largest_float_below_one(ctx):
    """DESIGN.md's float32 formula rounds to exactly 1.0 for w >= 0xFFFFFF00: clnet keeps it below 1."""
    g = clnet.Philox(ctx, 11)
    words = cla.empty(ctx.queue, 2**24, np.uint32)
    for _ in range(16):
        start = g.counter * 4
        hits = np.flatnonzero(g.raw(words).get() >= 0xFFFFFF00)
        if len(hits):
            break
    else:
        pytest.fail("no word >= 0xFFFFFF00 in 2**28 words (expected about 16)")
    position = start + hits[0]
    g.counter = position // 4
    u = g.uniform(cla.empty(ctx.queue, 4, np.float32)).get()[position % 4]
    assert u == np.float32(1 - 2.0**-24) == np.nextafter(np.float32(1), np.float32(0))


def test_moments_within_five_sigma(ctx, dtype):
    n = 1_000_000
    g = clnet.Philox(ctx, 2024)
    low, high = -1.0, 3.0
    u = g.uniform(cla.empty(ctx.queue, n, dtype), low, high).get().astype(np.float64)
    mean, var = (low + high) / 2, (high - low) ** 2 / 12
    fourth = (high - low) ** 4 / 80  # central fourth moment of a uniform
    assert abs(u.mean() - mean) < 5 * math.sqrt(var / n)
    assert abs(u.var() - var) < 5 * math.sqrt((fourth - var**2) / n)
    mu, sigma = 0.5, 2.0
    z = g.normal(cla.empty(ctx.queue, n, dtype), mu, sigma).get().astype(np.float64)
    assert abs(z.mean() - mu) < 5 * sigma / math.sqrt(n)
    assert abs(z.var() - sigma**2) < 5 * math.sqrt(2 * sigma**4 / n)


def test_kolmogorov_smirnov(ctx, dtype):
    g = clnet.Philox(ctx, 77)
    z = g.normal(cla.empty(ctx.queue, 200_000, dtype)).get()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # each half of every pair too: a mistake in sin or cos shows there
    assert stats.kstest(z[0::2], "norm").pvalue > 1e-3 and stats.kstest(z[1::2], "norm").pvalue > 1e-3
    u = g.uniform(cla.empty(ctx.queue, 200_000, dtype)).get()
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_same_seed_same_numbers_in_another_context(ctx):
    from .conftest import TEST_DEVICE

    a = clnet.Philox(ctx, 42).normal(cla.empty(ctx.queue, 100, np.float32)).get()
    with clnet.Context(TEST_DEVICE) as other:
        b = clnet.Philox(other, 42).normal(cla.empty(other.queue, 100, np.float32)).get()
    np.testing.assert_array_equal(a, b)


def test_empty_fill_is_fine(ctx):
    g = clnet.Philox(ctx, 1, counter=5)
    g.uniform(cla.empty(ctx.queue, 0, np.float32))
    assert g.counter == 5
    assert rng.philox4x32(ctx, np.zeros((0, 4), np.uint32), np.zeros((0, 2), np.uint32)).shape == (0, 4)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**64, ValueError), (1.5, TypeError),
                                         (True, TypeError), ("7", TypeError), (None, TypeError)])
def test_bad_seed(ctx, seed, error):
    with pytest.raises(error, match="seed must be"):
        clnet.Philox(ctx, seed)


def test_numpy_integer_seed_and_bad_counter(ctx):
    assert clnet.Philox(ctx, np.uint64(2**64 - 1)).key == (2**32 - 1, 2**32 - 1)
    g = clnet.Philox(ctx, 1)
    with pytest.raises(ValueError, match="counter must be in 0..2\\*\\*64-1"):
        g.counter = -1
    with pytest.raises(TypeError, match="counter"):
        g.counter = 0.5


def test_bad_fill_arguments(ctx):
    g = clnet.Philox(ctx, 1)
    ints = cla.empty(ctx.queue, 8, np.int32)
    floats = cla.empty(ctx.queue, 8, np.float32)
    with pytest.raises(TypeError, match="float32 or float64 arrays, got int32"):
        g.uniform(ints)
    with pytest.raises(TypeError, match="float32 or float64 arrays, got int32"):
        g.normal(ints)
    with pytest.raises(TypeError, match="pyopencl.array.Array"):
        g.normal(np.zeros(8, np.float32))
    with pytest.raises(TypeError, match="dtype uint32"):
        g.raw(floats)
    with pytest.raises(ValueError, match="low < high"):
        g.uniform(floats, 1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        g.uniform(floats, 0.0, math.inf)
    with pytest.raises(ValueError, match="std >= 0"):
        g.normal(floats, 0.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        g.normal(floats, math.nan)
    with pytest.raises(ValueError, match="local_size"):
        g.uniform(floats, local_size=0)
    with pytest.raises(ValueError, match="C-contiguous"):
        g.uniform(cla.empty(ctx.queue, (4, 4), np.float32)[:, 1])
    assert g.counter == 0  # failed calls draw nothing


def test_float64_without_fp64(ctx):
    with clnet.Context(dataclasses.replace(ctx.info, fp64=False)) as no_fp64:
        with pytest.raises(clnet.DeviceCapabilityError, match="cl_khr_fp64"):
            clnet.Philox(no_fp64, 1).uniform(cla.empty(no_fp64.queue, 4, np.float64))


@pytest.mark.parametrize("counters, keys, match", [
    (np.zeros((3, 4), np.int32), np.zeros((3, 2), np.uint32), "counters must have dtype uint32"),
    (np.zeros((3, 4), np.uint32), np.zeros((3, 2), np.uint64), "keys must have dtype uint32"),
    (np.zeros((3, 3), np.uint32), np.zeros((3, 2), np.uint32), r"counters must have shape \(n, 4\)"),
    (np.zeros(12, np.uint32), np.zeros((3, 2), np.uint32), r"counters must have shape \(n, 4\)"),
    (np.zeros((3, 4), np.uint32), np.zeros((3, 4), np.uint32), r"keys must have shape \(n, 2\)"),
    (np.zeros((3, 4), np.uint32), np.zeros((2, 2), np.uint32), "same number of rows"),
    ([[0, 0, 0, 0]], np.zeros((1, 2), np.uint32), "pyopencl.array.Array"),
])
def test_bad_counters_and_keys(ctx, counters, keys, match):
    with pytest.raises((TypeError, ValueError), match=match):
        rng.philox4x32(ctx, counters, keys)
