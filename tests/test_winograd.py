"""Winograd's F(2x2, 3x3) (clnet/ops/winograd.py, kernels/winograd.cl) and the batched products it
runs: against PyTorch's conv2d and numpy, in float64 to 1e-10, at odd sizes and paddings, flipped
(dC/dx), and inside a layer's forward and backward passes."""

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.nn import Step
from clnet.ops import blas, conv, tiled_gemm, winograd

from .layer_check import compare, tolerance, train_half

torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")


def geometry(channels, out, height, width, padding):
    return conv.Geometry(channels, height, width, out, 3, 3, 1, 1, padding, padding, 1, 1, 1, height + 2 * padding - 2,
                         width + 2 * padding - 2)


def test_a_batch_of_products_in_one_launch_equals_numpys(ctx, dtype):
    """gemm_packed_b's batch: 3 products of (7, 10) @ (10, 21), each 3 matrices apart by strides
    longer than a matrix, B packed as the GEMM reads it."""
    rng = np.random.default_rng(0)
    m, k, n, count = 7, 10, 21, 3
    columns = tiled_gemm.tile_columns(blas.settings(ctx, dtype).tiles, dtype)
    panels = -(-n // columns)
    a_stride, b_stride, c_stride = m * k + 5, panels * columns * k + columns, m * n + 3
    a = rng.normal(size=(count, m, k)).astype(dtype)
    b = rng.normal(size=(count, k, n)).astype(dtype)
    a_flat, b_flat, c_flat = (np.zeros(count * s, dtype) for s in (a_stride, b_stride, c_stride))
    for p in range(count):
        a_flat[p * a_stride:p * a_stride + m * k] = a[p].ravel()
        padded = np.zeros((k, panels * columns), dtype)
        padded[:, :n] = b[p]  # panels of `columns` columns, each row by row
        b_flat[p * b_stride:p * b_stride + padded.size] = padded.reshape(k, panels, columns).transpose(1, 0, 2).ravel()
    a_dev, b_dev, c_dev = (cla.to_device(ctx.queue, f) for f in (a_flat, b_flat, c_flat))
    blas.gemm_packed_b(ctx, a_dev[:m * k].reshape(m, k), b_dev, c_dev[:m * n].reshape(m, n), n,
                       batch=(count, a_stride, b_stride, c_stride))
    c = c_dev.get()
    for p in range(count):
        np.testing.assert_allclose(c[p * c_stride:p * c_stride + m * n].reshape(m, n), a[p] @ b[p], **tolerance(dtype))


def test_a_batch_that_runs_past_its_buffers_is_refused(ctx):
    """gemm_packed_b's batch: a count below 1, and a or c whose last product would end past the
    buffer, are ValueErrors naming what is wrong (never a read or write past the end)."""
    a, c = cla.zeros(ctx.queue, (4, 3), np.float32), cla.zeros(ctx.queue, (4, 5), np.float32)
    packed = cla.zeros(ctx.queue, 10_000, np.float32)
    with pytest.raises(ValueError, match="count of at least 1"):
        blas.gemm_packed_b(ctx, a, packed, c, 5, batch=(0, 12, 100, 20))
    with pytest.raises(ValueError, match="last a ends at element 24, past its buffer of 12"):
        blas.gemm_packed_b(ctx, a, packed, c, 5, batch=(2, 12, 100, 0))
    with pytest.raises(ValueError, match="last c ends at element 40, past its buffer of 20"):
        blas.gemm_packed_b(ctx, a, packed, c, 5, batch=(2, 0, 100, 20))


def test_winograd_refuses_what_it_does_not_compute(ctx):
    """A 5x5 or strided geometry, or filters of the wrong shape: ValueErrors, not a wrong result."""
    q = ctx.queue
    x, out = cla.zeros(q, (1, 2, 6, 6), np.float32), cla.zeros(q, (1, 3, 6, 6), np.float32)
    five = conv.Geometry(2, 6, 6, 3, 5, 5, 1, 1, 2, 2, 1, 1, 1, 6, 6)
    with pytest.raises(ValueError, match="3x3 convolutions of stride 1.*got 5x5"):
        winograd.forward(ctx, x, cla.zeros(q, (3, 2, 5, 5), np.float32), None, out, "linear", None, None, five)
    with pytest.raises(ValueError, match="weights"):
        winograd.forward(ctx, x, cla.zeros(q, (3, 2, 3, 3), np.float32), None, out, "linear", None, None,
                         geometry(2, 3, 6, 6, 1), flip=True)


@pytest.mark.parametrize("channels, out, height, width, padding, batch, activation", [
    (3, 5, 7, 5, 1, 2, "relu"),  # odd sizes: tiles past the output's edge
    (4, 3, 6, 9, 0, 1, "gelu"),
    (2, 4, 4, 4, 2, 3, "tanh"),
    (5, 6, 8, 8, 1, 2, "linear"),
])
def test_winograd_equals_pytorch(ctx, dtype, channels, out, height, width, padding, batch, activation):
    """out = f(conv(x) + bias) with z kept, and (flip) the transposed convolution of filters
    (in, out, 3, 3): conv2d with them turned 180 degrees and transposed."""
    g = geometry(channels, out, height, width, padding)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, channels, height, width)).astype(dtype)
    w, w_t = rng.normal(size=(out, channels, 3, 3)).astype(dtype), rng.normal(size=(channels, out, 3, 3)).astype(dtype)
    b = rng.normal(size=out).astype(dtype)
    f = {"relu": torch.relu, "gelu": torch.nn.functional.gelu, "tanh": torch.tanh, "linear": lambda t: t}[activation]
    z_expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), padding=padding)
    flipped_expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w_t).transpose(0, 1).flip(2, 3),
                                                  padding=padding)
    shape = tuple(z_expected.shape)
    result, z, flipped = (cla.zeros(ctx.queue, shape, dtype) for _ in range(3))
    q = ctx.queue
    winograd.forward(ctx, cla.to_device(q, x), cla.to_device(q, w), cla.to_device(q, b), result, activation, None, z, g)
    winograd.forward(ctx, cla.to_device(q, x), cla.to_device(q, w_t), None, flipped, "linear", None, None, g, flip=True)
    np.testing.assert_allclose(z.get(), z_expected.numpy(), **tolerance(dtype))
    np.testing.assert_allclose(result.get(), f(z_expected).numpy(), **tolerance(dtype))
    np.testing.assert_allclose(flipped.get(), flipped_expected.numpy(), **tolerance(dtype))


def test_winograd_gives_the_same_bits_on_every_run(ctx):
    """No atomics and a fixed order of every sum: two runs of the forward pass (and the flipped one)
    are bit-identical."""
    g = geometry(6, 5, 7, 6, 1)
    rng = np.random.default_rng(2)
    x = cla.to_device(ctx.queue, rng.normal(size=(3, 6, 7, 6)).astype(np.float32))
    w = cla.to_device(ctx.queue, rng.normal(size=(5, 6, 3, 3)).astype(np.float32))
    w_t = cla.to_device(ctx.queue, rng.normal(size=(6, 5, 3, 3)).astype(np.float32))
    runs = []
    for _ in range(2):
        out, flipped = cla.zeros(ctx.queue, (3, 5, 7, 6), np.float32), cla.zeros(ctx.queue, (3, 5, 7, 6), np.float32)
        winograd.forward(ctx, x, w, None, out, "relu", None, None, g)
        winograd.forward(ctx, x, w_t, None, flipped, "linear", None, None, g, flip=True)
        runs.append((out.get(), flipped.get()))
    assert all(np.array_equal(a, b) for a, b in zip(*runs)) and runs[0][0].any()


def test_the_rule_takes_small_images_of_many_channels(ctx):
    """bench_winograd's findings: 8x8 and 4x4 images of 64-512 channels, not 16x16 images, nor 2x2
    ones of 512 channels at batch 16 (16 MB of filters for 16 tiles), nor 32 channels or stride 2."""
    if blas.settings(ctx, np.float32).backend(128, 256, 128) != "clnet":
        pytest.skip("Winograd runs where clnet's GEMM runs the products")
    f32 = np.dtype(np.float32)
    assert winograd.applies(ctx, f32, geometry(128, 128, 8, 8, 1), 16)
    assert winograd.applies(ctx, f32, geometry(512, 512, 4, 4, 1), 16)
    assert not winograd.applies(ctx, f32, geometry(64, 64, 16, 16, 1), 16)
    assert not winograd.applies(ctx, f32, geometry(512, 512, 2, 2, 1), 16)
    assert not winograd.applies(ctx, f32, geometry(32, 32, 8, 8, 1), 16)
    strided = conv.Geometry(128, 8, 8, 128, 3, 3, 2, 2, 1, 1, 1, 1, 1, 4, 4)
    assert not winograd.applies(ctx, f32, strided, 16)


@pytest.mark.parametrize("shape, out", [((64, 7, 7), 64), ((64, 4, 5), 72)])
def test_a_layer_run_by_winograd_equals_pytorch(ctx, dtype, shape, out):
    """A Conv2d layer whose forward pass and dC/dx run Winograd (in float32 its filters' gradient from
    padded images on the 7-pixel rows, from im2col on 5): forward, dC/dx and the parameters' gradients
    against PyTorch, after a check that Winograd's kernels run."""
    net = clnet.InferenceNetwork(ctx, shape, [clnet.Conv2d(out, 3, padding=1, activation="relu")], dtype=dtype)
    if not winograd.applies(ctx, np.dtype(dtype), net.layers[0].geometry, 2):
        pytest.skip("Winograd runs where clnet's GEMM runs the products")
    trainer = train_half(ctx, net, cla.to_device(ctx.queue, np.ones((2, *shape), dtype)))
    with ctx.record() as plan:
        trainer.forward(Step())
        trainer.backward()
    names = [kernel.function_name for kernel, size, _ in plan.launches if size is not None]
    assert names.count("winograd_output") == 2 and "im2col" not in names[:names.index("winograd_output")]
    from_images = conv.images_filter_gradients(ctx, np.dtype(dtype), net.layers[0].geometry, 2)
    assert ("filter_gradient" in names) == from_images and ("im2col" in names) != from_images
    if dtype == np.float32:  # rows too short for conv_direct's 16 columns: padded images after Winograd on 7
        assert from_images == (shape[2] >= conv.WINOGRAD_IMAGE_ROWS)
    compare(ctx, clnet.Conv2d(out, 3, padding=1, activation="relu"), torch.nn.Conv2d(shape[0], out, 3, padding=1),
            shape, 2, dtype, activation=torch.relu)
