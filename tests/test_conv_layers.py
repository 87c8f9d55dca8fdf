"""Convolution, pooling and normalization layers (issue 21) against PyTorch: each layer's
forward pass, input gradient and parameter gradients on random shapes (odd sizes, stride 2,
padding, dilation, groups, batch 1, channel counts that are no vector width's multiple), float64
to 1e-10 and float32 to the usual tolerance."""

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.nn import Step

from .layer_check import compare, train_half

torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")

ACTIVATIONS = {"linear": lambda t: t, "relu": torch.relu, "tanh": torch.tanh,
               "gelu": torch.nn.functional.gelu, ("leaky_relu", 0.2): lambda t: torch.nn.functional.leaky_relu(t, 0.2)}


@pytest.mark.parametrize("shape, batch, out, kernel, options", [
    ((3, 7, 6), 3, 4, 3, {}),
    ((3, 9, 8), 2, 5, (3, 2), {"stride": 2, "padding": 1, "activation": "relu"}),
    ((4, 9, 9), 1, 6, 3, {"padding": "same", "dilation": 2, "groups": 2, "activation": "gelu"}),
    ((5, 6, 7), 2, 5, 2, {"padding": "same", "groups": 5, "bias": False, "activation": "tanh"}),  # depthwise
    ((6, 9, 8), 3, 6, 3, {"stride": 2, "padding": 1, "groups": 6, "activation": "relu"}),  # MobileNet's stride 2
    ((4, 7, 9), 2, 4, (3, 5), {"padding": (2, 1), "dilation": (2, 1), "groups": 4, "activation": "gelu"}),
    ((1, 11, 10), 3, 9, 5, {"stride": (2, 3), "padding": (2, 1), "activation": ("leaky_relu", 0.2)}),
    ((6, 5, 5), 4, 3, 1, {"stride": 2}),
    ((8, 3, 3), 1, 4, 3, {"padding": 1}),  # few columns: the filters' gradient without a transpose
    # rows wide enough for conv_direct in float32 too: the filters' gradient from the padded images
    ((3, 12, 13), 2, 7, 3, {"padding": 1, "activation": "relu"}),
    ((4, 12, 12), 2, 6, 3, {"padding": 1, "groups": 2, "activation": "relu"}),  # dC/dx's filters flipped by groups
    ((2, 12, 14), 3, 5, (3, 5), {"padding": (1, 2), "dilation": (2, 1)}),
    ((4, 11, 12), 1, 3, 4, {"padding": "same", "bias": False, "activation": "tanh"}),
    # 1x1 convolutions, computed as images of one row (conv_geometry.flat): 49 pixels (a padded copy), 16 (in
    # place), grouped, depthwise, and with a stride (not flat)
    ((5, 7, 7), 2, 6, 1, {"activation": "relu"}),
    ((3, 4, 4), 3, 4, 1, {"bias": False}),
    ((4, 3, 6), 2, 6, 1, {"groups": 2, "activation": "tanh"}),
    ((3, 5, 4), 2, 3, 1, {"groups": 3}),
    ((3, 6, 5), 2, 4, 1, {"stride": 2}),
    # stride 1, twice the channels out on rows too short for conv_direct in float32: dC/dx by col2im
    ((3, 5, 6), 2, 8, 3, {"padding": 1, "activation": "relu"}),
])
def test_conv2d_equals_pytorch(ctx, dtype, shape, batch, out, kernel, options):
    torch_options = {k: v for k, v in options.items() if k != "activation"}
    module = torch.nn.Conv2d(shape[0], out, kernel, **torch_options)
    compare(ctx, clnet.Conv2d(out, kernel, **options), module, shape, batch, dtype,
            activation=ACTIVATIONS[options.get("activation", "linear")])


@pytest.mark.parametrize("spec, shape", [(clnet.Conv2d(4, 3, padding=1, activation="tanh"), (3, 8, 8)),
                                         (clnet.Conv2d(4, 3, padding=1, activation="tanh"), (16, 2, 2))])
def test_conv2d_in_chunks_equals_one_chunk(ctx, monkeypatch, spec, shape):
    """A workspace of two images: the passes run image by image, with the same numbers (the
    filters' gradient added up chunk by chunk, transposed or, with few columns, in place)."""
    from clnet.ops import conv

    monkeypatch.setattr(conv, "WORKSPACE_BYTES", 2 * sum(conv.workspace_bytes(spec.geometry(shape), 1, 8)))
    net = compare(ctx, spec, torch.nn.Conv2d(shape[0], 4, 3, padding=1), shape, 5, np.float64,
                  activation=torch.tanh)
    training = clnet.TrainingNetwork(net, np.zeros((5, *shape)))
    assert training.layers[0].chunk == 2


@pytest.mark.parametrize("parts, chunk", [(3, None), (1, 2)])
def test_conv2d_filter_gradient_from_padded_images_in_parts_and_chunks(ctx, monkeypatch, parts, chunk):
    """conv_direct's filters' gradient (conv_direct.filter_gradients) with its lines cut into 3 parts, and
    in chunks of two images (the padded images made again in the backward pass, the gradient added
    up), equals PyTorch's."""
    from clnet.ops import conv, conv_direct, tiled_gemm

    spec, shape = clnet.Conv2d(5, 3, padding=(1, 2), activation="tanh"), (3, 10, 12)
    monkeypatch.setattr(tiled_gemm, "k_parts", lambda *args: parts)
    if chunk:
        monkeypatch.setattr(conv, "WORKSPACE_BYTES", chunk * sum(conv.workspace_bytes(spec.geometry(shape), 1, 8)))
    called = []
    original = conv_direct.filter_gradients
    monkeypatch.setattr(conv_direct, "filter_gradients", lambda *args: called.append(args[-1]) or original(*args))
    compare(ctx, spec, torch.nn.Conv2d(3, 5, 3, padding=(1, 2)), shape, 5, np.float64, activation=torch.tanh)
    assert called and (True in called) == bool(chunk)  # accumulated over chunks only when chunked


@pytest.mark.parametrize("spec, module, shape, batch", [
    (clnet.MaxPool2d(2), torch.nn.MaxPool2d(2), (3, 8, 7), 2),
    (clnet.MaxPool2d(3, stride=2, padding=1), torch.nn.MaxPool2d(3, stride=2, padding=1), (5, 9, 10), 3),
    (clnet.MaxPool2d((2, 3), stride=(1, 2)), torch.nn.MaxPool2d((2, 3), stride=(1, 2)), (2, 6, 9), 1),
    (clnet.AvgPool2d(2), torch.nn.AvgPool2d(2), (3, 8, 7), 2),
    (clnet.AvgPool2d(3, stride=2, padding=1), torch.nn.AvgPool2d(3, stride=2, padding=1), (5, 9, 10), 3),
    (clnet.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
     torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (4, 7, 8), 2),
    (clnet.GlobalAvgPool2d(), torch.nn.AdaptiveAvgPool2d(1), (6, 5, 7), 3),
    # ceil_mode (SqueezeNet's pooling): last windows that start in the image and reach past it
    (clnet.MaxPool2d(3, stride=2, ceil_mode=True), torch.nn.MaxPool2d(3, stride=2, ceil_mode=True), (3, 8, 7), 2),
    (clnet.MaxPool2d(2, ceil_mode=True), torch.nn.MaxPool2d(2, ceil_mode=True), (2, 7, 5), 2),
    (clnet.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
     torch.nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (3, 8, 6), 2),
    (clnet.AvgPool2d(2, stride=3, ceil_mode=True, count_include_pad=False),
     torch.nn.AvgPool2d(2, stride=3, ceil_mode=True, count_include_pad=False), (2, 8, 7), 2),
    # adaptive: uneven windows, even ones, and more outputs than inputs
    (clnet.AdaptiveAvgPool2d((3, 2)), torch.nn.AdaptiveAvgPool2d((3, 2)), (3, 7, 5), 2),
    (clnet.AdaptiveAvgPool2d(4), torch.nn.AdaptiveAvgPool2d(4), (2, 8, 8), 1),
    (clnet.AdaptiveAvgPool2d((5, 3)), torch.nn.AdaptiveAvgPool2d((5, 3)), (2, 3, 2), 2),
])
def test_pooling_equals_pytorch(ctx, dtype, spec, module, shape, batch):
    compare(ctx, spec, module, shape, batch, dtype)


def test_max_pool_sends_the_gradient_to_the_first_of_tied_maxima(ctx):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, :2, :2] = 1.0  # four tied maxima in the first window
    net = clnet.InferenceNetwork(ctx, (1, 4, 4), [clnet.MaxPool2d(2)], dtype=np.float64)
    trainer = train_half(ctx, net, cla.to_device(ctx.queue, x))
    trainer.forward(Step())
    trainer.delta.set(np.ones((1, 1, 2, 2)))
    trainer.backward()
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, 2).sum().backward()
    np.testing.assert_array_equal(trainer.grad_x.get(), xt.grad.numpy())


def test_max_pool_propagates_nan_as_pytorch_does(ctx):
    x = np.arange(32, dtype=np.float64).reshape(1, 2, 4, 4)
    x[0, 0, 1, 0] = x[0, 1, 3, 3] = np.nan
    net = clnet.InferenceNetwork(ctx, (2, 4, 4), [clnet.MaxPool2d(2)], dtype=np.float64)
    expected = torch.nn.functional.max_pool2d(torch.tensor(x), 2).numpy()
    # host data with NaN is refused at the door; a device array is taken as it is
    np.testing.assert_array_equal(net(cla.to_device(ctx.queue, x)).get(), expected)  # NaN where a window holds one


def test_bad_convolution_and_pooling_arguments_say_what_is_allowed(ctx):
    for bad, message in [
        (lambda: clnet.Conv2d(0, 3), "out_channels must be a whole number >= 1"),
        (lambda: clnet.Conv2d(4, (3, 0)), "kernel_size must be a whole number >= 1 or a pair"),
        (lambda: clnet.Conv2d(4, 3, stride=2, padding="same"), "padding='same' needs stride 1"),
        (lambda: clnet.Conv2d(6, 3, groups=4), r"out_channels \(6\) must be a multiple of groups \(4\)"),
        (lambda: clnet.Conv2d(4, 3, activation="softmax"), "softmax is for"),
        (lambda: clnet.MaxPool2d(2, padding=2), "at most half the kernel size"),
        (lambda: clnet.InferenceNetwork(ctx, (3, 8, 8), [clnet.Conv2d(4, 3, groups=2)]),
         r"3 channels are not a multiple of groups \(2\)"),
        (lambda: clnet.InferenceNetwork(ctx, (3, 4, 4), [clnet.Conv2d(4, 5)]), "does not fit a 4x4 image"),
        (lambda: clnet.InferenceNetwork(ctx, 12, [clnet.Conv2d(4, 3)]),
         r"Conv2d takes \(batch, channels, height, width\) inputs"),
        (lambda: clnet.InferenceNetwork(ctx, (3, 8), [clnet.MaxPool2d(2)]), "MaxPool2d takes"),
    ]:
        with pytest.raises(ValueError, match=message):
            bad()


@pytest.mark.parametrize("spec, module, shape, batch", [
    (clnet.BatchNorm(), torch.nn.BatchNorm1d(5), (5,), 7),
    (clnet.BatchNorm(eps=1e-3, momentum=0.3), torch.nn.BatchNorm1d(3, eps=1e-3, momentum=0.3), (3, 6), 2),
    (clnet.BatchNorm(), torch.nn.BatchNorm2d(6), (6, 5, 7), 3),
    (clnet.BatchNorm(affine=False), torch.nn.BatchNorm2d(4, affine=False), (4, 3, 3), 1),
])
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_equals_pytorch_in_both_modes_with_its_running_statistics(ctx, dtype, spec, module, shape, batch,
                                                                            train):
    compare(ctx, spec, module, shape, batch, dtype, train=train, steps=3)


@pytest.mark.parametrize("spec, module, shape, batch", [
    (clnet.LayerNorm(7), torch.nn.LayerNorm(7), (7,), 5),
    (clnet.LayerNorm((4, 5)), torch.nn.LayerNorm((4, 5)), (3, 4, 5), 2),
    (clnet.LayerNorm(6, eps=1e-3, elementwise_affine=False), torch.nn.LayerNorm(6, eps=1e-3,
                                                                                elementwise_affine=False), (2, 6), 3),
])
def test_layer_norm_equals_pytorch(ctx, dtype, spec, module, shape, batch):
    compare(ctx, spec, module, shape, batch, dtype)


def test_batch_norm_refuses_to_train_on_one_value_per_channel(ctx):
    net = clnet.InferenceNetwork(ctx, 4, [clnet.BatchNorm(), clnet.FullyConnected(2)])
    with pytest.raises(ValueError, match="more than one value per channel"):
        clnet.TrainingNetwork(net, np.zeros((1, 4)))


def test_conv2d_training_remakes_its_workspace_when_the_gemm_settings_change(ctx, monkeypatch):
    """Built where conv_direct runs every pass (a workspace of padded images only), then with the
    GEMM settings of a GPU (im2col and a GEMM: a column matrix): the training half makes a workspace
    that holds it, and its passes still equal PyTorch's."""
    from clnet.ops import blas, conv

    spec, shape = clnet.Conv2d(4, 3, padding=1), (3, 12, 12)
    net = clnet.InferenceNetwork(ctx, shape, [spec], dtype=np.float64, seed=0)
    trainer = train_half(ctx, net, cla.to_device(ctx.queue, np.zeros((2, *shape))))
    assert not trainer.columns and trainer.cols.size < conv.workspace_bytes(net.layers[0].geometry, 2, 8)[0] // 8
    settings = blas.settings(ctx, np.float64)
    monkeypatch.setattr(settings, "small", "clnet_gpu")
    monkeypatch.setattr(settings, "large", "clnet_gpu")
    compare(ctx, spec, torch.nn.Conv2d(3, 4, 3, padding=1), shape, 2, np.float64)
    trainer.forward(Step())
    assert trainer.columns and trainer.cols.size * 8 >= conv.workspace_bytes(net.layers[0].geometry, 2, 8)[0]


@pytest.mark.parametrize("shape, in_place", [((3, 4, 4), True), ((3, 4, 8), True), ((3, 3, 5), False)])
def test_a_1x1_convolution_of_short_rows_runs_direct_on_images_read_in_place(ctx, shape, in_place):
    """A 1x1 convolution whose rows are too short for conv_direct runs it on images of one row
    (conv_geometry.flat) where that row is whole tiles of 16 (float32), reading them where they are (no
    pad_images launch, forward or backward); otherwise by im2col and a GEMM."""
    from clnet.ops import blas

    if blas.settings(ctx, np.float32).backend(4, 64, 3) != "clnet" or ctx.info.type != "CPU":
        pytest.skip("conv_direct runs where clnet's GEMM runs the products")
    net = clnet.InferenceNetwork(ctx, shape, [clnet.Conv2d(4, 1)], dtype=np.float32, seed=0)
    trainer = train_half(ctx, net, cla.to_device(ctx.queue, np.ones((2, *shape), np.float32)))
    with ctx.record() as plan:
        trainer.forward(Step())
        trainer.backward()
    names = [kernel.function_name for kernel, size, _ in plan.launches if size is not None]
    assert ("conv_direct" in names and "filter_gradient" in names and "pad_images" not in names) == in_place
    assert ("im2col" in names) != in_place


def test_an_expanding_convolution_of_short_rows_takes_its_input_gradient_by_col2im(ctx):
    """3 -> 8 channels, stride 1, rows of 6 (float32: too short for conv_direct): dC/dx is
    weights.T @ dz summed back by col2im, not the convolution of delta with the flipped filters."""
    from clnet.ops import blas

    if blas.settings(ctx, np.float32).backend(8, 64, 27) != "clnet" or ctx.info.type != "CPU":
        pytest.skip("the rule is for conv_direct's devices")
    net = clnet.InferenceNetwork(ctx, (3, 5, 6), [clnet.Conv2d(8, 3, padding=1)], dtype=np.float32, seed=0)
    trainer = train_half(ctx, net, cla.to_device(ctx.queue, np.ones((2, 3, 5, 6), np.float32)))
    trainer.forward(Step())
    with ctx.record() as plan:
        trainer.backward()
    names = [kernel.function_name for kernel, size, _ in plan.launches if size is not None]
    assert "col2im" in names and "flip_weights" not in names


def test_a_direct_input_gradient_flips_the_filters_as_it_packs_them(ctx):
    """dC/dx of a convolution whose transposed one runs conv_direct: pack_filters reads the filters
    flipped and transposed (no flip_weights pass), and dC/dx equals the flipped filters' convolution
    of delta written out in numpy."""
    from clnet.ops import blas

    if blas.settings(ctx, np.float64).backend(3, 64, 18) != "clnet" or ctx.info.type != "CPU":
        pytest.skip("conv_direct runs where clnet's GEMM runs the products")
    rng = np.random.default_rng(3)
    net = clnet.InferenceNetwork(ctx, (2, 9, 9), [clnet.Conv2d(3, 3, padding=1, bias=False)], dtype=np.float64,
                                seed=0)
    x = rng.standard_normal((2, 2, 9, 9))
    trainer = train_half(ctx, net, cla.to_device(ctx.queue, x))
    trainer.forward(Step())
    delta = rng.standard_normal((2, 3, 9, 9))
    trainer.delta.set(delta)
    with ctx.record() as plan:
        trainer.backward()
    names = [kernel.function_name for kernel, size, _ in plan.launches if size is not None]
    assert "conv_direct" in names and "flip_weights" not in names
    w = net.layers[0].weights.get()  # (3, 2, 3, 3)
    padded = np.pad(delta, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros_like(x)
    for ky in range(3):
        for kx in range(3):  # dx[n, c, y, x] = sum of delta[n, o, y + 1 - ky, x + 1 - kx] w[o, c, ky, kx]
            expected += np.einsum("noyx,oc->ncyx", padded[:, :, 2 - ky:11 - ky, 2 - kx:11 - kx], w[:, :, ky, kx])
    assert np.abs(trainer.grad_x.get() - expected).max() < 1e-10


class BatchNormThen(torch.nn.Module):
    """PyTorch's batch norm and an activation after it, with the batch norm's parameters named as
    layer_check copies them."""

    def __init__(self, bn, activation):
        super().__init__()
        self.bn, self.activation = bn, activation

    def forward(self, x):
        return self.activation(self.bn(x))

    def __getattr__(self, name):
        if name in ("weight", "bias", "running_mean", "running_var"):
            return getattr(self.bn, name)
        return super().__getattr__(name)


@pytest.mark.parametrize("activation, then, affine, shape", [
    ("relu", torch.relu, True, (6, 5, 7)),                    # the derivative reads the output
    ("gelu", torch.nn.functional.gelu, True, (4, 3, 5)),      # ... reads z, made again from x
    ("silu", torch.nn.functional.silu, False, (3, 4, 4)),     # without scale and shift
    (("leaky_relu", 0.2), lambda t: torch.nn.functional.leaky_relu(t, 0.2), True, (5,)),  # features
    ("tanh", torch.tanh, True, (3, 9)),                        # 9 values a row: a vector and a tail
    ("relu", torch.relu, True, (4, 2, 3)),                     # 6 values a row: the activation apart
])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("is_output", [False, True])  # inside a network: fused where rows are a vector or more
def test_batch_norm_with_its_activation_fused_equals_pytorchs_batch_norm_then_the_activation(
        ctx, dtype, activation, then, affine, shape, train, is_output):
    channels = shape[0]
    bn = (torch.nn.BatchNorm1d if len(shape) < 3 else torch.nn.BatchNorm2d)(channels, affine=affine)
    compare(ctx, clnet.BatchNorm(affine=affine, activation=activation), BatchNormThen(bn, then), shape, 3, dtype,
            train=train, steps=2, is_output=is_output)


def test_batch_norm_with_an_activation_refuses_rowwise_ones(ctx):
    with pytest.raises(ValueError, match="cannot be softmax, which works on whole rows"):
        clnet.BatchNorm(activation="softmax")
    with pytest.raises(ValueError, match="swish2"):
        clnet.BatchNorm(activation="swish2")


@pytest.mark.parametrize("activation, cost", [("sigmoid", "cross_entropy"), ("relu", "mse")])
def test_a_batch_norm_with_its_activation_as_the_output_layer_trains_as_one_then_an_activation(ctx, activation, cost):
    """The output layer keeps z for the costs that read logits (cross-entropy after sigmoid) and
    skips the derivative they already applied; mse applies it: an SGD epoch equals the same network
    with a plain BatchNorm and an Activation layer."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.integers(0, 2, (12, 3)).astype(float)
    nets = [clnet.InferenceNetwork(ctx, (5,), [clnet.FullyConnected(3, "linear"), *layers], dtype=np.float64, seed=1)
            for layers in ([clnet.BatchNorm(activation=activation)], [clnet.BatchNorm(), clnet.Activation(activation)])]
    for net in nets:
        net.fit(x, y, cost, 2, 4, optimizer=clnet.SGD(0.1), progress=False, seed=0)
    for (name, a), b in zip(nets[0].named_arrays().items(), nets[1].named_arrays().values()):
        np.testing.assert_allclose(a.get(), b.get(), rtol=1e-12, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(nets[0](x).get(), nets[1](x).get(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("shape, fused", [((4, 4, 4), True), ((4, 2, 2), False), ((6,), False)])
def test_batch_norm_runs_its_activation_in_its_own_kernels_only_on_rows_of_a_vector_or_more(ctx, shape, fused):
    """Fused where a row of the elementwise passes holds a vector (float32: 8 values); on shorter
    rows (2x2 images, features) an activation kernel of its own, as an Activation layer's."""
    net = clnet.InferenceNetwork(ctx, shape, [clnet.BatchNorm(activation="relu"), clnet.Flatten(),
                                              clnet.FullyConnected(2)], dtype=np.float32, seed=0)
    training = clnet.TrainingNetwork(net, np.ones((3, *shape), np.float32))
    with ctx.record() as plan:
        training.layers[0].forward(Step())
        training.layers[0].backward()
    names = [kernel.function_name for kernel, size, _ in plan.launches if size is not None]
    assert ("forward_relu" in names or "backward_relu" in names) != fused
