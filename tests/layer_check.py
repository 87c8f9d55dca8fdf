"""One layer of a clnet network against the same PyTorch module: forward pass, input gradient,
parameter gradients and running statistics (tests/test_conv_layers.py, tests/test_portable.py)."""

import numpy as np
import pyopencl.array as cla

import clnet
from clnet.nn import Link, Step

TORCH_NAMES = {"weights": "weight", "bias": "bias", "scale": "weight", "shift": "bias",
               "running_mean": "running_mean", "running_var": "running_var"}


def tolerance(dtype):
    return {"rtol": 1e-10, "atol": 1e-11} if dtype == np.float64 else {"rtol": 2e-4, "atol": 2e-5}


def to_torch(module, layer, dtype):
    """Copy the clnet layer's arrays into the PyTorch module."""
    import torch

    module.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for name, array in layer.arrays.items():
            getattr(module, TORCH_NAMES[name]).copy_(torch.tensor(array.get()))


def train_half(ctx, net, x, with_input_gradient=True, is_output=True):
    """The training half of the network's one layer, with a buffer for dC/dx (is_output: as the
    network's last layer, as it is when alone)."""
    layer = net.layers[0]
    gradients = dict(zip([p.name for p in net.placements[0].parameters if p.trainable], net.gradient_buffer.views))
    grad_x = cla.empty(ctx.queue, x.shape, net.dtype) if with_input_gradient else None
    return layer.training(Link(x.shape[0], x, grad_x, gradients, layer.arrays, 0, is_output))


def compare(ctx, spec, module, shape, batch, dtype, seed=0, activation=lambda t: t, train=True, steps=1,
            is_output=True):
    """The layer against module (then activation) on random inputs: forward, dC/dx and dC/dparams
    for a random dC/d(out); `steps` training forward passes (running statistics)."""
    net = clnet.InferenceNetwork(ctx, shape, [spec], dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    for name, array in net.layers[0].arrays.items():  # away from the initial values, so that each matters
        if name != "running_var":
            array.set(rng.normal(size=array.shape).astype(dtype))
    to_torch(module, net.layers[0], dtype)
    module.zero_grad(set_to_none=True)  # the module may have served another case
    module.train(train)
    x = rng.normal(size=(batch, *shape)).astype(dtype)
    x_dev = cla.to_device(ctx.queue, x)
    trainer = train_half(ctx, net, x_dev, is_output=is_output)
    import torch

    for _ in range(steps):
        xt = torch.tensor(x, requires_grad=True)
        expected = activation(module(xt))
        trainer.forward(Step(train=train))
    g = rng.normal(size=expected.shape).astype(dtype)
    expected.backward(torch.tensor(g))
    trainer.delta.set(g)
    trainer.backward()
    tol = tolerance(dtype)
    np.testing.assert_allclose(trainer.out.get(), expected.detach().numpy(), **tol)
    np.testing.assert_allclose(trainer.grad_x.get(), xt.grad.numpy(), **tol)
    for name, gradient in zip([p.name for p in net.placements[0].parameters if p.trainable],
                              net.gradient_buffer.views):
        np.testing.assert_allclose(gradient.get(), getattr(module, TORCH_NAMES[name]).grad.numpy(), **tol,
                                   err_msg=name)
    for name, array in net.layers[0].arrays.items():  # the running statistics
        if name.startswith("running"):
            np.testing.assert_allclose(array.get(), getattr(module, name).numpy(), **tol, err_msg=name)
    module.eval()
    with torch.no_grad():
        np.testing.assert_allclose(net(x).get(), activation(module(torch.tensor(x))).numpy(), **tol)
    return net
