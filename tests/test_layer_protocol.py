"""The layer protocol (issue 20): a layer type defined in this file only trains with fit, saves,
loads, checkpoints and resumes after a kill, and runs on 2 MPI ranks as one process does; the
layers that stand alone (Activation, Flatten, Dropout); networks on samples of any rank. Each
against finite differences or numpy written out here."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyopencl.array as cla
import pytest
from pyopencl.elementwise import ElementwiseKernel

import clnet
from clnet.ops import costs

from . import reference as ref
from .conftest import TEST_DEVICE

ROOT = Path(__file__).resolve().parents[1]

# -- a layer type of this test's own: y = x * s, one learned factor per feature --------------------

_KERNELS = {}


def scale_kernels(ctx, dtype):
    """pyopencl's own elementwise kernels (not clnet's): out = x * s per feature, and the column
    sums of delta * x (the gradient of s)."""
    key = (ctx.context.int_ptr, np.dtype(dtype).name)
    if key not in _KERNELS:
        real = "float" if np.dtype(dtype) == np.float32 else "double"
        _KERNELS[key] = (
            ElementwiseKernel(ctx.context, f"{real} *out, const {real} *x, const {real} *s, unsigned width",
                              "out[i] = x[i] * s[i % width]"),
            ElementwiseKernel(ctx.context, f"{real} *gs, const {real} *delta, const {real} *x, unsigned rows, "
                              "unsigned width", f"{real} acc = 0; for (unsigned r = 0; r < rows; r++) "
                              "acc += delta[r * width + i] * x[r * width + i]; gs[i] = acc;"))
    return _KERNELS[key]


class Scale(clnet.Layer):
    """y = x * s, s of the sample's shape, starting at ones."""

    def parameters(self, input_shape):
        return [clnet.Parameter("scale", input_shape, init="ones")]

    def build(self, ctx, input_shape, dtype, arrays):
        return ScaleLayer(self, ctx, input_shape, dtype, arrays)


class ScaleLayer(clnet.BuiltLayer):
    def forward(self, x, out=None):
        out = self.empty(x.shape[0]) if out is None else out
        scale = self.arrays["scale"]
        scale_kernels(self.ctx, self.dtype)[0](out, x, scale, np.uint32(scale.size))
        return out

    def training(self, link):
        return ScaleTraining(self, link)


class ScaleTraining(clnet.LayerTraining):
    def __init__(self, layer, link):
        super().__init__(layer, link)
        self.out, self.delta = layer.empty(self.batch), layer.empty(self.batch)

    def forward(self, step):
        self.layer.forward(self.x, self.out)

    def backward(self):
        multiply, column_sums = scale_kernels(self.ctx, self.layer.dtype)
        scale = self.arrays["scale"]
        column_sums(self.gradients["scale"], self.delta, self.x, np.uint32(self.batch), np.uint32(scale.size))
        if self.grad_x is not None:
            multiply(self.grad_x, self.delta, scale, np.uint32(scale.size))


clnet.register_layer(Scale)


def scaled_layers():
    return [clnet.FullyConnected(6, "tanh"), Scale(), clnet.FullyConnected(3, "softmax")]


def make_data(samples=40, seed=3):
    x = np.random.default_rng(seed).normal(size=(samples, 4))
    return x, x[:, :3].argmax(axis=1)  # labels a network can learn


def host(net):
    return net.host_arrays()


def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def cross_entropy(net, x, labels):
    a = net(x).get().astype(np.float64)
    return -np.log(a[np.arange(len(labels)), labels]).mean()


def finite_difference_gradients(net, x, labels):
    named = net.named_arrays()
    return dict(zip(named, ref.central_differences(named.values(), lambda: cross_entropy(net, x, labels))))


def test_a_layer_defined_here_backpropagates_and_fit_follows_gradient_descent(ctx):
    """Scale first (nothing before it needs dC/dx) and in the middle; fit with SGD on one batch
    follows w -= rate * dC/dw with dC/dw from finite differences, epoch after epoch (its own
    layer runs live, the others replayed)."""
    x, labels = make_data(samples=12)
    net = clnet.InferenceNetwork(ctx, 4, [Scale(), *scaled_layers()], dtype=np.float64, seed=5)
    assert np.array_equal(net.layers[0].arrays["scale"].get(), np.ones(4)) and "Scale()" in repr(net)
    for name in ("layer_0.scale", "layer_2.scale"):  # away from ones, so that every gradient matters
        net.named_arrays()[name].set(np.random.default_rng(1).uniform(0.5, 1.5, net.named_arrays()[name].shape))
    for _ in range(2):
        before = host(net)
        expected = finite_difference_gradients(net, x, labels)
        history = net.fit(x, labels, "cross_entropy", epochs=1, batch_size=12, optimizer=clnet.SGD(0.5),
                          shuffle=False, progress=False)
        assert history[0] == pytest.approx(cross_entropy_of(before, net, x, labels), rel=1e-12)
        for name, value in host(net).items():
            np.testing.assert_allclose(value, before[name] - 0.5 * expected[name], rtol=1e-7, atol=1e-9)


def cross_entropy_of(arrays, net, x, labels):
    after = host(net)
    net.set_arrays(arrays)
    value = cross_entropy(net, x, labels)
    net.set_arrays(after)
    return value


def test_a_layer_defined_here_trains_saves_and_loads(ctx, tmp_path):
    x, labels = make_data()
    net = clnet.InferenceNetwork(ctx, 4, scaled_layers(), dtype=np.float64, seed=2)
    history = net.fit(x, labels, "cross_entropy", epochs=30, batch_size=8, optimizer=clnet.Adam(0.02), seed=1,
                      progress=False)
    assert history[-1] < 0.6 * history[0]
    assert not np.allclose(net.layers[1].arrays["scale"].get(), 1)  # it learned its scale too
    loaded = clnet.load(net.save(tmp_path / "scaled"), ctx)
    assert loaded.specs == net.specs and same(host(loaded), host(net))
    np.testing.assert_array_equal(loaded(x).get(), net(x).get())
    assert loaded.accuracy(x, labels) == net.accuracy(x, labels) > 0.5


def test_an_unregistered_or_unknown_layer_type_is_named(ctx, tmp_path):
    class Unregistered(Scale):
        pass

    net = clnet.InferenceNetwork(ctx, 4, [Unregistered(), clnet.FullyConnected(2)])
    with pytest.raises(ValueError, match=r"Unregistered is not registered: call clnet.register_layer\(Unregistered\)"):
        net.save(tmp_path / "n.npz")
    saved = dict(np.load(clnet.InferenceNetwork(ctx, 4, [Scale()]).save(tmp_path / "s.npz")))
    saved["clnet_network"] = np.array(str(saved["clnet_network"]).replace('"Scale"', '"Nope"'))
    np.savez(tmp_path / "nope.npz", **saved)
    with pytest.raises(ValueError, match="unknown layer type 'Nope': register it with clnet.register_layer"):
        clnet.load(tmp_path / "nope.npz", ctx)
    with pytest.raises(TypeError, match="subclass of clnet.Layer"):
        clnet.register_layer(int)


KILLED_RUN = textwrap.dedent("""\
    import os, signal, sys
    sys.path.insert(0, sys.argv[3])
    import numpy as np, clnet
    from tests.test_layer_protocol import make_data, scaled_layers

    class KilledMidEpoch(clnet.Adam):
        def step(self, params, grads, keep=None):
            super().step(params, grads, keep)
            if self.steps == 18:  # epoch 4 of 5 steps each, third step
                params.ctx.finish()
                os.kill(os.getpid(), signal.SIGKILL)

    x, labels = make_data()
    with clnet.Context(sys.argv[2]) as ctx:
        net = clnet.InferenceNetwork(ctx, 4, scaled_layers(), dtype=np.float64, seed=11)
        net.fit(x, labels, "cross_entropy", epochs=6, batch_size=8, optimizer=KilledMidEpoch(0.01), seed=2,
                progress=False, checkpoint=sys.argv[1], resume=True)
    """)


def test_a_layer_defined_here_resumes_bit_for_bit_after_a_kill(ctx, tmp_path):
    path = tmp_path / "killed.npz"
    result = subprocess.run([sys.executable, "-c", KILLED_RUN, str(path), TEST_DEVICE, str(ROOT)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    x, labels = make_data()
    runs = []
    for checkpoint in (path, None):
        net = clnet.InferenceNetwork(ctx, 4, scaled_layers(), dtype=np.float64, seed=11)
        history = net.fit(x, labels, "cross_entropy", epochs=6, batch_size=8, optimizer=clnet.Adam(0.01), seed=2,
                          progress=False, checkpoint=checkpoint, resume=checkpoint is not None)
        runs.append((history, host(net)))
    (resumed, resumed_arrays), (whole, whole_arrays) = runs
    assert resumed == whole and same(resumed_arrays, whole_arrays)


MPIEXEC = Path(sys.executable).with_name("mpiexec")
RANKS_RUN = textwrap.dedent("""\
    import sys
    sys.path.insert(0, sys.argv[3])
    import numpy as np, clnet
    from tests.test_layer_protocol import make_data, scaled_layers

    world = clnet.distributed.World()
    x, labels = make_data(61, seed=7)
    with world.context(sys.argv[2]) as ctx:
        net = clnet.InferenceNetwork(ctx, 4, scaled_layers(), dtype=np.float64, seed=1 + world.rank)
        history = net.fit(x, labels, "cross_entropy", epochs=4, batch_size=16, optimizer=clnet.Adam(0.01), seed=3,
                          progress=False, world=world)
        if world.rank == 0:
            np.savez(sys.argv[1], history=np.array(history), **net.host_arrays())
    """)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec is not in the venv: pip install 'clnet[mpi]'")
def test_a_layer_defined_here_trains_on_two_ranks_as_one_process(ctx, tmp_path):
    out = tmp_path / "ranks.npz"
    env = {**os.environ, "POCL_MAX_PTHREAD_COUNT": "1"}
    result = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-c", RANKS_RUN, str(out), TEST_DEVICE,
                             str(ROOT)], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    x, labels = make_data(61, seed=7)
    net = clnet.InferenceNetwork(ctx, 4, scaled_layers(), dtype=np.float64, seed=1)
    history = net.fit(x, labels, "cross_entropy", epochs=4, batch_size=16, optimizer=clnet.Adam(0.01), seed=3,
                      progress=False)
    saved = np.load(out)
    np.testing.assert_allclose(saved["history"], history, rtol=1e-10)
    for name, value in host(net).items():
        np.testing.assert_allclose(saved[name], value, rtol=1e-10, atol=1e-12)


# -- the layers that stand alone -----------------------------------------------------------------

def test_flatten_activations_and_dropout_on_samples_of_rank_three(ctx, dtype):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 2, 3, 4))
    net = clnet.InferenceNetwork(ctx, (2, 3, 4), [clnet.Activation("tanh"), clnet.Flatten(),
                                                  clnet.FullyConnected(7), clnet.Activation("relu"),
                                                  clnet.Activation(("leaky_relu", 0.2)), clnet.Dropout(0.3),
                                                  clnet.FullyConnected(3, "sigmoid")], dtype=dtype, seed=3)
    assert net.input_shape == (2, 3, 4) and net.inputs == (2, 3, 4) and net.outputs == 3
    w0, b0 = net.layers[2].weights.get(), net.layers[2].bias.get()
    w1, b1 = net.layers[6].weights.get(), net.layers[6].bias.get()
    hidden = np.maximum(np.tanh(x.astype(dtype)).reshape(5, 24) @ w0.T + b0, 0)  # leaky_relu of relu: relu
    expected = ref.activation("sigmoid", hidden @ w1.T + b1)  # dropout: none at inference
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    np.testing.assert_allclose(net(x).get(), expected, **tol)
    np.testing.assert_allclose(net(cla.to_device(ctx.queue, x.astype(dtype))).get(), expected, **tol)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2, 3, 4\), got \(5, 24\)"):
        net(x.reshape(5, 24))


def test_standalone_layers_backpropagate_with_the_dropout_mask_of_their_position(ctx):
    """Gradients against finite differences with the same masks: a Dropout layer at position 3
    drops element e of a (layer 3, step) exactly where tests/reference.py's Philox mask says."""
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(5, 3, 2)), rng.uniform(size=(5, 2))
    net = clnet.InferenceNetwork(ctx, (3, 2), [clnet.Flatten(), clnet.FullyConnected(7, "gelu"),
                                               clnet.Activation("silu"), clnet.Dropout(0.4),
                                               clnet.Activation(("elu", 0.7)), clnet.FullyConnected(2, "sigmoid")],
                                 dtype=np.float64, seed=3)
    training = clnet.TrainingNetwork(net, x)
    training.dropout_key, training.step = 99, 7
    y_dev = cla.to_device(ctx.queue, y)

    def cost():
        out = training.forward()
        return costs.value(ctx, "quadratic", "sigmoid", out, training.logits, y_dev)

    cost()
    before, after = training.layers[2].out.get(), training.layers[3].out.get()
    keep = ref.dropout_keep(99, 3, 7, before.size, 0.4).reshape(before.shape)
    np.testing.assert_array_equal(after, np.where(keep, before / (1 - 0.4), 0))
    assert 0 < keep.mean() < 1
    costs.output_delta(ctx, "quadratic", training.output, y_dev, training.output_gradient)
    training.backward()
    analytic = [g.get() for g in training.gradients()]
    for g, numeric in zip(analytic, ref.central_differences(net.parameters(), cost)):
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)


def test_an_output_activation_layer_takes_the_cross_entropy_cost(ctx):
    """FullyConnected(3) then Activation("softmax") trains exactly as FullyConnected(3, "softmax")."""
    x, labels = make_data()
    runs = []
    for layers in ([clnet.FullyConnected(5, "tanh"), clnet.FullyConnected(3, "softmax")],
                   [clnet.FullyConnected(5, "tanh"), clnet.FullyConnected(3), clnet.Activation("softmax")]):
        net = clnet.InferenceNetwork(ctx, 4, layers, dtype=np.float64, seed=6)
        assert net.output_activation == "softmax"
        runs.append((net.fit(x, labels, "cross_entropy", epochs=3, batch_size=8, seed=2, progress=False),
                     [p.get() for p in net.parameters()]))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-12)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_fit_and_predict_on_samples_of_rank_three(ctx):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64)
    x = rng.normal(size=(64, 2, 2, 3)) * 0.3 + labels[:, None, None, None]  # class 1 is brighter
    net = clnet.InferenceNetwork(ctx, (2, 2, 3), [clnet.Flatten(), clnet.FullyConnected(8, "relu"),
                                                  clnet.FullyConnected(2, "softmax")], seed=1)
    history = net.fit(x, labels, "cross_entropy", epochs=20, batch_size=16, optimizer=clnet.Adam(0.01), seed=0,
                      progress=False, validation=(x[:16], labels[:16]))
    assert history[-1] < history[0] and net.accuracy(x, labels) > 0.9
    np.testing.assert_array_equal(net.predict(x), net(x).get().argmax(axis=1))


def test_layers_that_cannot_take_their_input_are_named(ctx):
    with pytest.raises(ValueError, match=r"layer 0 \(FullyConnected\(3, 'linear'\)\).*put clnet.Flatten\(\) before it"):
        clnet.InferenceNetwork(ctx, (2, 3, 4), [clnet.FullyConnected(3)])  # (seq, features) it takes
    with pytest.raises(ValueError, match="dropout on the output layer is not supported"):
        clnet.InferenceNetwork(ctx, 3, [clnet.FullyConnected(3), clnet.Dropout(0.5)])
    with pytest.raises(ValueError, match=r"softmax works on \(batch, features\) data"):
        clnet.InferenceNetwork(ctx, (2, 3), [clnet.Activation("softmax")])
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
        clnet.Dropout(1.5)
    for bad in (("relu", 0.1), ("leaky_relu", -1), ("elu", float("nan")), ("leaky_relu",)):
        with pytest.raises(ValueError):
            clnet.FullyConnected(3, bad)


def test_init_follows_each_parameters_fan_and_kind(ctx, dtype):
    """auto: what follows a linear layer decides (Xavier for Activation("tanh")); the scale stays
    at ones under every method; bit for bit the numbers of DESIGN.md's stream."""
    net = clnet.InferenceNetwork(ctx, 100, [clnet.FullyConnected(50), clnet.Activation("tanh"), Scale()],
                                 dtype=dtype, seed=7)
    std = dtype.type(np.sqrt(2 / 150))
    np.testing.assert_array_equal(net.layers[0].weights.get().ravel(), ref.normal_exact(7, 0, 5000, dtype, std=std))
    relu = clnet.InferenceNetwork(ctx, 100, [clnet.FullyConnected(50), clnet.Activation("relu")], dtype=dtype)
    assert 0.98 < np.abs(relu.layers[0].weights.get()).max() * 10 <= 1  # PyTorch's U(-0.1, 0.1) after a relu
    clnet.init(net, "gaussian", seed=1)
    assert np.array_equal(net.layers[2].arrays["scale"].get(), np.ones(50, dtype))
    assert net.layers[0].bias.get().std() > 0.5  # gaussian draws biases too


def test_files_of_the_first_format_still_load(ctx, tmp_path):
    rng = np.random.default_rng(2)
    w0, b0, w1, b1 = rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=(2, 5)), rng.normal(size=2)
    description = ('{"format": 1, "dtype": "float64", "inputs": 3, "layers": [{"outputs": 5, "activation": "tanh", '
                   '"dropout": 0.25}, {"outputs": 2, "activation": "linear"}]}')
    np.savez(tmp_path / "old.npz", clnet_network=np.array(description), weights_0=w0, bias_0=b0, weights_1=w1,
             bias_1=b1)
    net = clnet.load(tmp_path / "old.npz", ctx)
    assert net.specs == [clnet.FullyConnected(5, "tanh", dropout=0.25), clnet.FullyConnected(2)]
    x = rng.normal(size=(4, 3))
    np.testing.assert_allclose(net(x).get(), np.tanh(x @ w0.T + b0) @ w1.T + b1, rtol=1e-12)
