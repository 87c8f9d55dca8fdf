"""Activations whose derivative reads the input (gelu, gelu_tanh, silu, hardswish), and
hardsigmoid, against PyTorch, forward and backward, alone and inside a trained network;
activations with a parameter (leaky_relu and elu with any alpha) through save, checkpoints and
ONNX."""

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.ops import activations

from . import reference

torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")

TORCH = {"gelu": lambda t: torch.nn.functional.gelu(t),
         "gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
         "silu": torch.nn.functional.silu,
         "hardswish": torch.nn.functional.hardswish, "hardsigmoid": torch.nn.functional.hardsigmoid,
         ("leaky_relu", 0.2): lambda t: torch.nn.functional.leaky_relu(t, 0.2),
         ("elu", 0.7): lambda t: torch.nn.functional.elu(t, 0.7),
         "tanh": torch.tanh, "linear": lambda t: t}
Z = np.concatenate([[-100, -30, -5, -3.5, -1, -1e-3, 0, 1e-3, 0.5, 1, 2.5, 5, 30, 100], np.linspace(-8, 8, 37)])


@pytest.mark.parametrize("spec", ["gelu", "gelu_tanh", "silu", "hardswish", "hardsigmoid", ("leaky_relu", 0.2),
                                  ("elu", 0.7)])
def test_forward_and_backward_equal_pytorchs(ctx, dtype, spec):
    name, alpha = activations.parse(spec)
    z = Z.astype(dtype)
    t = torch.tensor(z, requires_grad=True)
    expected = TORCH[spec](t)
    expected.backward(torch.full_like(t, 3.0))
    z_dev = cla.to_device(ctx.queue, z)
    a = activations.forward(ctx, name, z_dev, cla.empty(ctx.queue, z.shape, dtype), alpha)
    grad = cla.to_device(ctx.queue, np.full(z.shape, 3.0, dtype))
    activations.backward(ctx, name, z_dev if activations.reads(name) == "z" else a, grad, alpha)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == np.float64 else {"rtol": 2e-6, "atol": 2e-6}
    np.testing.assert_allclose(a.get(), expected.detach().numpy(), **tol)
    if name == "hardsigmoid" and dtype == np.float64:  # PyTorch's float64 slope is float32's 1/6
        np.testing.assert_allclose(grad.get(), t.grad.numpy(), rtol=1e-7)
        tol, t.grad = {"rtol": 1e-15}, torch.tensor(3 * reference.activation_derivative(name, Z))
    np.testing.assert_allclose(grad.get(), t.grad.numpy(), **tol)


LAYERS = [(7, "gelu"), (6, "silu"), (5, "gelu_tanh"), (4, ("leaky_relu", 0.2)), (3, "softmax")]


def torch_model(net):
    """The same network in PyTorch, with clnet's weights; the softmax is in the cost."""
    modules = []
    for layer, (_, spec) in zip(net.layers, LAYERS):
        linear = torch.nn.Linear(layer.inputs, layer.outputs, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(layer.weights.get()))
            linear.bias.copy_(torch.tensor(layer.bias.get()))
        modules += [linear] + ([] if spec == "softmax" else [TorchActivation(spec)])
    return torch.nn.Sequential(*modules)


class TorchActivation(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.f = TORCH[spec]

    def forward(self, t):
        return self.f(t)


def test_a_network_of_them_trains_as_pytorch_does(ctx):
    """Forward, gradients and four SGD steps of fit (one batch, no shuffling) equal PyTorch's in
    float64 to 1e-10."""
    rng = np.random.default_rng(5)
    x, labels = rng.normal(size=(16, 8)), rng.integers(0, 3, 16)
    net = clnet.InferenceNetwork(ctx, 8, [clnet.FullyConnected(o, a) for o, a in LAYERS], dtype=np.float64, seed=2)
    model = torch_model(net)
    xt, lt = torch.tensor(x), torch.tensor(labels)
    np.testing.assert_allclose(net(x).get(), torch.softmax(model(xt), dim=1).detach().numpy(), rtol=1e-10,
                               atol=1e-13)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    for _ in range(4):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), lt).backward()
        optimizer.step()
    net.fit(x, labels, "cross_entropy", epochs=4, batch_size=16, optimizer=clnet.SGD(0.3), shuffle=False,
            progress=False)
    expected = [p.detach().numpy() for p in model.parameters()]
    for got, want in zip(net.parameters(), expected):
        np.testing.assert_allclose(got.get(), want, rtol=1e-10, atol=1e-12)


def test_standalone_activation_layers_equal_the_fused_ones(ctx):
    """FullyConnected(7) + Activation("gelu") trains as FullyConnected(7, "gelu"), and so on."""
    rng = np.random.default_rng(6)
    x, labels = rng.normal(size=(20, 8)), rng.integers(0, 3, 20)
    fused = clnet.InferenceNetwork(ctx, 8, [clnet.FullyConnected(o, a) for o, a in LAYERS], dtype=np.float64)
    alone = clnet.InferenceNetwork(ctx, 8, [layer for o, a in LAYERS for layer in
                                            (clnet.FullyConnected(o), clnet.Activation(a))], dtype=np.float64)
    alone.set_arrays({f"layer_{2 * i}.{name}": value for i, (_, layer) in enumerate(zip(LAYERS, fused.layers))
                      for name, value in [("weights", layer.weights.get()), ("bias", layer.bias.get())]})
    for net in (fused, alone):
        net.fit(x, labels, "cross_entropy", epochs=3, batch_size=5, optimizer=clnet.Adam(0.01), seed=1,
                progress=False)
    for a, b in zip(fused.parameters(), alone.parameters()):
        np.testing.assert_allclose(a.get(), b.get(), rtol=1e-10, atol=1e-12)


def test_an_alpha_round_trips_through_save_checkpoint_and_onnx(ctx, tmp_path):
    x, labels = np.random.default_rng(1).normal(size=(30, 4)), np.arange(30) % 3
    layers = [clnet.FullyConnected(6, ("leaky_relu", 0.2)), clnet.Activation(("elu", 0.5)),
              clnet.FullyConnected(3, "softmax")]
    net = clnet.InferenceNetwork(ctx, 4, layers, seed=3)
    assert repr(layers[0]) == "FullyConnected(6, ('leaky_relu', 0.2))" and layers[0].alpha == 0.2
    loaded = clnet.load(net.save(tmp_path / "net"), ctx)
    assert loaded.specs == layers and loaded.layers[0].alpha == 0.2 and loaded.layers[1].alpha == 0.5
    # a checkpoint resumes only into the same network: the alpha is part of it
    net.fit(x, labels, "cross_entropy", epochs=1, progress=False, checkpoint=tmp_path / "c.npz")
    other = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(6, ("leaky_relu", 0.3)), *layers[1:]])
    with pytest.raises(ValueError, match="holds another network"):
        other.fit(x, labels, "cross_entropy", epochs=2, progress=False, checkpoint=tmp_path / "c.npz", resume=True)
    resumed = clnet.InferenceNetwork(ctx, 4, layers)
    resumed.fit(x, labels, "cross_entropy", epochs=2, progress=False, checkpoint=tmp_path / "c.npz", resume=True)
    assert clnet.load(tmp_path / "c.npz", ctx).layers[0].alpha == 0.2
    onnx = pytest.importorskip("onnx", reason="needs the onnx extra")
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")
    path = net.to_onnx(tmp_path / "net.onnx")
    alphas = {n.op_type: n.attribute[0].f for n in onnx.load(str(path)).graph.node if n.op_type in ("LeakyRelu", "Elu")}
    assert alphas == pytest.approx({"LeakyRelu": 0.2, "Elu": 0.5})
    session = ort.InferenceSession(str(path))
    xf = x.astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"x": xf})[0], net(xf).get(), rtol=1e-5, atol=1e-6)
    back = clnet.from_onnx(path, ctx)
    assert [layer.alpha for layer in back.layers] == [0.2, 0.5, None]
    np.testing.assert_allclose(back(xf).get(), net(xf).get(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "silu"])
def test_onnx_export_of_the_newer_activations_runs_in_onnxruntime(ctx, tmp_path, name):
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")
    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(6, name), clnet.FullyConnected(2)], seed=1)
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32) * 3
    session = ort.InferenceSession(str(net.to_onnx(tmp_path / "m.onnx")))
    np.testing.assert_allclose(session.run(None, {"x": x})[0], net(x).get(), rtol=1e-5, atol=1e-5)
