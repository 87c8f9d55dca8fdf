"""Networks that branch (issue 30): residual, concatenation and squeeze-and-excitation blocks,
nested too, against the same model built from torch.nn's modules (tests/torch_mirror.py): the
forward pass, dC/dx and every parameter's gradient of a block, float64 to 1e-10; three SGD steps
of a network holding all three; saving, freezing, initialization and dropout inside blocks."""

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.nn import Step

from .layer_check import tolerance, train_half

torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
from .torch_mirror import mirror, torch_arrays  # noqa: E402

C, R = clnet.Conv2d, clnet.Residual


def projection_block(channels):
    """ResNet's basic block with a projection shortcut (stride 2)."""
    return R([C(channels, 3, stride=2, padding=1, bias=False), clnet.BatchNorm(), clnet.Activation("relu"),
              C(channels, 3, padding=1, bias=False), clnet.BatchNorm()],
             shortcut=[C(channels, 1, stride=2, bias=False), clnet.BatchNorm()])


def squeeze_excite(channels, squeezed=2):
    return clnet.Multiply([], [clnet.GlobalAvgPool2d(), C(squeezed, 1, activation="relu"),
                               C(channels, 1, activation="sigmoid")])


BLOCKS = {
    "residual": ((3, 7, 6), projection_block(5)),
    "identity": ((4, 5, 5), R([C(4, 3, padding=1, activation="relu"), C(4, 3, padding=1)])),
    "concat": ((3, 6, 5), clnet.Concat([C(3, 1, activation="relu")], [C(2, 3, padding=1, activation="tanh")], [])),
    "dense": ((4, 5, 6), clnet.Concat([], [clnet.BatchNorm(), clnet.Activation("relu"), C(3, 3, padding=1)])),
    "squeeze_excite": ((6, 5, 4), squeeze_excite(6)),
    "nested": ((4, 6, 6), R([C(4, 3, padding=1, activation="silu"),
                             clnet.Multiply([], [clnet.GlobalAvgPool2d(), clnet.Flatten(),
                                                 clnet.FullyConnected(3, "relu"), clnet.FullyConnected(4, "sigmoid")]),
                             clnet.Concat([C(2, 1)], [clnet.Activation("relu"), C(2, 1)])])),
}


def randomize(net, rng):
    """Parameters away from their initial values, running variances positive."""
    arrays = {name: (np.abs(a) + 0.5 if "running_var" in name else rng.normal(size=a.shape)).astype(net.dtype)
              for name, a in net.host_arrays().items()}
    net.set_arrays(arrays)


@pytest.mark.parametrize("name", BLOCKS)
def test_a_block_equals_pytorch(ctx, dtype, name):
    shape, block = BLOCKS[name]
    net = clnet.InferenceNetwork(ctx, shape, [block], dtype=dtype)
    rng = np.random.default_rng(1)
    randomize(net, rng)
    model = mirror(net, dtype).train()
    x = rng.normal(size=(3, *shape)).astype(dtype)
    trainer = train_half(ctx, net, cla.to_device(ctx.queue, x))  # the block, with a buffer for dC/dx
    trainer.forward(Step())
    xt = torch.tensor(x, requires_grad=True)
    expected = model(xt)
    g = rng.normal(size=expected.shape).astype(dtype)
    expected.backward(torch.tensor(g))
    trainer.delta.set(g)
    trainer.backward()
    tol = tolerance(dtype)
    np.testing.assert_allclose(trainer.out.get(), expected.detach().numpy(), **tol)
    np.testing.assert_allclose(trainer.grad_x.get(), xt.grad.numpy(), **tol)
    found = torch_arrays(model, net)
    for p, gradient in zip([p for p in net.placements[0].parameters if p.trainable], net.gradient_buffer.views):
        np.testing.assert_allclose(gradient.get(), found[f"layer_0.{p.name}"].grad.numpy(), **tol, err_msg=p.name)
    for key, value in net.host_arrays().items():  # the running statistics, after one training pass
        if "running" in key:
            np.testing.assert_allclose(value, found[key].numpy(), **tol, err_msg=key)
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(net(x).get(), model(torch.tensor(x)).numpy(), **tol)


def branching_net(ctx, dtype, seed=0):
    return clnet.InferenceNetwork(ctx, (3, 8, 8), [
        C(4, 3, padding=1, bias=False), clnet.BatchNorm(), clnet.Activation("relu"),
        projection_block(6), clnet.Activation("relu"),
        clnet.Concat([C(2, 1, activation="relu")], [C(3, 3, padding=1, activation="relu")], []),
        squeeze_excite(11, 3), clnet.GlobalAvgPool2d(), clnet.Flatten(), clnet.FullyConnected(4)],
        dtype=dtype, seed=seed)


def test_three_sgd_steps_equal_pytorch_training(ctx, dtype):
    """Cross-entropy on the logits of a linear output (PyTorch's CrossEntropyLoss), SGD with
    momentum, batch statistics and running statistics, through all three kinds of block."""
    net = branching_net(ctx, dtype)
    rng = np.random.default_rng(5)
    x, labels = rng.normal(size=(6, 3, 8, 8)).astype(dtype), rng.integers(0, 4, 6)
    model = mirror(net, dtype).train()
    history = net.fit(x, labels, epochs=3, batch_size=6, optimizer=clnet.SGD(0.1, momentum=0.9), progress=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.tensor(x)), torch.tensor(labels))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    tol = tolerance(dtype)
    np.testing.assert_allclose(history, losses, **tol)
    found = torch_arrays(model, net)
    for key, value in net.host_arrays().items():
        np.testing.assert_allclose(value, found[key].detach().numpy(), **tol, err_msg=key)
    probabilities = net.predict_proba(x)
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(probabilities, torch.softmax(model(torch.tensor(x)), 1).numpy(), **tol)


def test_blocks_save_load_and_describe_themselves(ctx, tmp_path):
    net = branching_net(ctx, np.float64, seed=3)
    path = net.save(tmp_path / "branching")
    loaded = clnet.load(path, ctx)
    assert loaded.specs == net.specs and repr(loaded.specs[3]).startswith("Residual([Conv2d(")
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
    np.testing.assert_array_equal(loaded(x).get(), net(x).get())
    assert "layer_3.shortcut.0.weights" in net.named_arrays() and "layer_5.branch1.0.bias" in net.named_arrays()
    text = net.summary(print_fn=None)
    assert "shortcut.1: batch norm" in text and "branch2: the input itself" in text


def test_each_parameter_is_initialized_by_its_own_fan_in_and_activation(ctx):
    """Inside blocks each weight gets PyTorch's default (relu after it) or Xavier by its own
    fan-in and fan-out: the spreads match the formulas."""
    block = R([C(32, 3, padding=1, activation="relu"), C(32, 3, padding=1, activation="tanh")])
    net = clnet.InferenceNetwork(ctx, (32, 4, 4), [block], dtype=np.float64, seed=2)
    params = {p.name: p for p in net.placements[0].parameters}
    assert params["body.0.weights"].activation == "relu" and params["body.1.weights"].activation == "tanh"
    assert params["body.0.bias"].fan_in == 32 * 9
    arrays = net.host_arrays()
    relu_w, tanh_w = arrays["layer_0.body.0.weights"], arrays["layer_0.body.1.weights"]
    limit = 1 / np.sqrt(32 * 9)  # PyTorch's default: U(-limit, limit), standard deviation limit / sqrt(3)
    assert np.abs(relu_w).max() <= limit and abs(relu_w.std() - limit / np.sqrt(3)) < 0.05 * limit
    assert np.abs(arrays["layer_0.body.0.bias"]).max() <= limit and np.abs(arrays["layer_0.body.0.bias"]).max() > 0
    xavier = np.sqrt(2 / (32 * 9 + 32 * 9))
    assert abs(tanh_w.std() - xavier) < 0.05 * xavier and not arrays["layer_0.body.1.bias"].any()


def test_dropout_inside_blocks_draws_a_mask_per_layer(ctx):
    """Two dropout layers in two branches of one block drop different elements (each has its
    position), and a layer after the block has a position of its own."""
    block = clnet.Concat([clnet.Dropout(0.5)], [clnet.Dropout(0.5)])
    net = clnet.InferenceNetwork(ctx, 64, [clnet.FullyConnected(64), block, clnet.Dropout(0.5),
                                           clnet.FullyConnected(1)], dtype=np.float64)
    training = clnet.TrainingNetwork(net, np.ones((2, 64)))
    training.forward()
    first, second = (chain[0].out.get() != 0 for chain in training.layers[1].chains)
    assert first.mean() == pytest.approx(0.5, abs=0.15) and (first != second).mean() > 0.3
    assert [t.index for chain in training.layers[1].chains for t in chain] == [1, 2]
    assert training.layers[2].index == 3


def test_blocks_refuse_what_they_cannot_merge(ctx):
    with pytest.raises(ValueError, match="at least two branches"):
        clnet.Concat([C(2, 1)])
    with pytest.raises(ValueError, match="must give one shape"):
        clnet.InferenceNetwork(ctx, (3, 4, 4), [R([C(5, 1)])])
    with pytest.raises(ValueError, match="the others must agree"):
        clnet.InferenceNetwork(ctx, (3, 4, 4), [clnet.Concat([C(2, 1)], [clnet.MaxPool2d(2)])])
    with pytest.raises(ValueError, match=r"factor must have the main branch's shape \(3, 4, 4\)"):
        clnet.InferenceNetwork(ctx, (3, 4, 4), [clnet.Multiply([], [clnet.GlobalAvgPool2d(), C(2, 1)])])
    with pytest.raises(ValueError, match="layer 0 .*body: layer 1"):
        clnet.InferenceNetwork(ctx, (3, 4, 4), [R([C(3, 1), clnet.FullyConnected(3)])])
    with pytest.raises(TypeError, match="branch 1 of Add must be a list of"):
        clnet.Add([C(2, 1)], "conv")


def test_a_frozen_body_keeps_its_weights_while_the_head_trains_as_pytorchs(ctx, tmp_path):
    net = branching_net(ctx, np.float64, seed=4)
    net.freeze()  # every layer but the last
    assert [p.shape for p in net.parameters()] == [(4, 11), (4,)] and "(frozen)" in net.summary(print_fn=None)
    rng = np.random.default_rng(6)
    x, labels = rng.normal(size=(6, 3, 8, 8)), rng.integers(0, 4, 6)
    model = mirror(net, np.float64).train()
    for p in model[:-1].parameters():
        p.requires_grad = False
    before = net.host_arrays()
    net.fit(x, labels, epochs=3, batch_size=6, optimizer=clnet.SGD(0.1, momentum=0.9), progress=False,
            checkpoint=tmp_path / "frozen.npz")
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.tensor(x)), torch.tensor(labels)).backward()
        optimizer.step()
    found, after = torch_arrays(model, net), net.host_arrays()
    for key, value in after.items():
        np.testing.assert_allclose(value, found[key].detach().numpy(), rtol=1e-10, atol=1e-11, err_msg=key)
        if "running" not in key and not key.startswith("layer_9."):
            assert np.array_equal(value, before[key]), key  # frozen: bit for bit
    assert not np.array_equal(after["layer_9.weights"], before["layer_9.weights"])
    loaded = clnet.load(tmp_path / "frozen.npz", ctx)
    assert [s.trainable for s in loaded.specs] == [False] * 9 + [True]
    again = branching_net(ctx, np.float64, seed=4)  # not frozen: its checkpoint settings differ
    with pytest.raises(ValueError, match="network"):
        again.fit(x, labels, epochs=3, batch_size=6, optimizer=clnet.SGD(0.1, momentum=0.9), progress=False,
                  checkpoint=tmp_path / "frozen.npz", resume=True)
    net.unfreeze()
    assert len(net.parameters()) == len([k for k in after if "running" not in k])


def test_a_new_head_keeps_the_body_and_its_arrays(ctx):
    net = branching_net(ctx, np.float64, seed=4)
    net.freeze()
    headed = net.with_head([clnet.FullyConnected(7)])
    assert headed.output_shape == (7,) and not headed.specs[3].trainable and headed.specs[-1].trainable
    old, new = net.host_arrays(), headed.host_arrays()
    assert all(np.array_equal(new[k], old[k]) for k in old if not k.startswith("layer_9."))
    assert new["layer_9.weights"].shape == (7, 11)


KILLED_RUN = """\\
import os, signal, sys
sys.path.insert(0, sys.argv[3])
import numpy as np, clnet
from tests.test_blocks import branching_data, branching_net

class KilledMidEpoch(clnet.SGD):
    def step(self, params, grads, keep=None):
        super().step(params, grads, keep)
        if self.steps == 7:  # epoch 3 of 3 steps each, first step
            params.ctx.finish()
            os.kill(os.getpid(), signal.SIGKILL)

x, labels = branching_data()
with clnet.Context(sys.argv[2]) as ctx:
    branching_net(ctx, np.float64, seed=2).fit(x, labels, epochs=4, batch_size=4, seed=5, progress=False,
        optimizer=KilledMidEpoch(0.05, momentum=0.9), checkpoint=sys.argv[1], resume=True)
"""


def branching_data():
    rng = np.random.default_rng(8)
    return rng.normal(size=(12, 3, 8, 8)), rng.integers(0, 4, 12)


def test_a_killed_residual_network_resumes_bit_for_bit(ctx, tmp_path):
    """Batch norm's running statistics, momentum and the shuffling all come back."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import TEST_DEVICE

    path, root = tmp_path / "killed.npz", Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", KILLED_RUN, str(path), TEST_DEVICE, str(root)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == -signal.SIGKILL, result.stderr
    x, labels = branching_data()
    runs = []
    for checkpoint in (path, None):
        net = branching_net(ctx, np.float64, seed=2)
        history = net.fit(x, labels, epochs=4, batch_size=4, seed=5, progress=False,
                          optimizer=clnet.SGD(0.05, momentum=0.9), checkpoint=checkpoint,
                          resume=checkpoint is not None)
        runs.append((list(history), net.host_arrays()))
    (resumed, arrays), (whole, expected) = runs
    assert resumed == whole
    assert all(np.array_equal(arrays[k], expected[k]) for k in expected)


RANKS_RUN = """\\
import sys
sys.path.insert(0, sys.argv[3])
import numpy as np, clnet
from tests.test_blocks import branching_data, plain_branching_net

world = clnet.distributed.World()
x, labels = branching_data()
with world.context(sys.argv[2]) as ctx:
    net = plain_branching_net(ctx, seed=1 + world.rank)  # rank 0's weights reach every rank
    history = net.fit(x, labels, epochs=2, batch_size=6, optimizer=clnet.SGD(0.05, momentum=0.9), seed=3,
                      progress=False, world=world)
    if world.rank == 0:
        np.savez(sys.argv[1], history=np.array(history), **net.host_arrays())
"""


def plain_branching_net(ctx, seed=0):
    """Blocks without batch norm, whose statistics would differ between ranks."""
    return clnet.InferenceNetwork(ctx, (3, 8, 8), [
        C(4, 3, padding=1, activation="relu"),
        R([C(6, 3, stride=2, padding=1, activation="relu"), C(6, 3, padding=1)], shortcut=[C(6, 1, stride=2)]),
        clnet.Activation("relu"), clnet.Concat([C(2, 1, activation="relu")], []), squeeze_excite(8, 2),
        clnet.GlobalAvgPool2d(), clnet.Flatten(), clnet.FullyConnected(4)], dtype=np.float64, seed=seed)


def test_a_network_with_blocks_trains_on_two_ranks_as_one_process(ctx, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from .conftest import TEST_DEVICE

    mpiexec = Path(sys.executable).with_name("mpiexec")
    if not mpiexec.exists():
        pytest.skip("mpiexec is not in the venv: pip install 'clnet[mpi]'")
    out, root = tmp_path / "ranks.npz", Path(__file__).resolve().parents[1]
    result = subprocess.run([str(mpiexec), "-n", "2", sys.executable, "-c", RANKS_RUN, str(out), TEST_DEVICE,
                             str(root)], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "POCL_MAX_PTHREAD_COUNT": "1"})
    assert result.returncode == 0, result.stderr
    x, labels = branching_data()
    net = plain_branching_net(ctx, seed=1)
    history = net.fit(x, labels, epochs=2, batch_size=6, optimizer=clnet.SGD(0.05, momentum=0.9), seed=3,
                      progress=False)
    saved = np.load(out)
    np.testing.assert_allclose(saved["history"], history, rtol=1e-10)
    for name, value in net.host_arrays().items():
        np.testing.assert_allclose(saved[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", BLOCKS)
def test_blocks_export_to_onnx_run_in_onnxruntime_and_import_back(ctx, tmp_path, name):
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")
    shape, block = BLOCKS[name]
    net = clnet.InferenceNetwork(ctx, shape, [block, clnet.GlobalAvgPool2d(), clnet.Flatten(),
                                              clnet.FullyConnected(3)], dtype=np.float32, seed=4)
    randomize(net, np.random.default_rng(2))
    x = np.random.default_rng(3).normal(size=(2, *shape)).astype(np.float32)
    path = net.to_onnx(tmp_path / f"{name}.onnx")
    found = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(found, net(x).get(), rtol=1e-4, atol=1e-5)
    back = clnet.from_onnx(path, ctx)
    np.testing.assert_allclose(back(x).get(), net(x).get(), rtol=1e-5, atol=1e-6)
    assert sum(p.size for p in back.parameters()) == sum(p.size for p in net.parameters())


def test_freezing_and_new_heads_refuse_what_is_not_there(ctx):
    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(3, "tanh"), clnet.FullyConnected(2)])
    for bad in (5, [0, 7], "all"):
        with pytest.raises(ValueError, match="layers must be indices of this network's 2 layers, a slice or None"):
            net.freeze(bad)
    assert all(s.trainable for s in net.specs)  # a refused freeze changes nothing
    with pytest.raises(ValueError, match=r"keep must be in 0..2, got 3"):
        net.with_head([clnet.FullyConnected(2)], keep=3)
    with pytest.raises(ValueError, match="output_size must be a whole number >= 1 or a pair of them, got 0"):
        clnet.AdaptiveAvgPool2d(0)
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d takes \(batch, channels, height, width\) inputs"):
        clnet.InferenceNetwork(ctx, 4, [clnet.AdaptiveAvgPool2d(2)])


def test_what_onnx_cannot_say_is_refused_by_name(ctx, tmp_path):
    onnx = pytest.importorskip("onnx", reason="needs onnx (the test extra)")
    net = clnet.InferenceNetwork(ctx, (2, 5, 5), [clnet.AdaptiveAvgPool2d(3)])
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d\(output_size=\[3, 3\]\) on 5x5 images has no ONNX form"):
        net.to_onnx(tmp_path / "uneven.onnx")
    from onnx import TensorProto, helper

    def save(nodes, name):
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        return path

    steep = save([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.2, name="keras_hard_sigmoid")], "hs.onnx")
    with pytest.raises(ValueError, match="keras_hard_sigmoid': HardSigmoid\\(alpha=0.2, beta=0.5\\); clnet's "
                                         "hardsigmoid is PyTorch's, alpha 1/6 and beta 1/2"):
        clnet.from_onnx(steep, ctx)
    stacked = save([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Tanh", ["x"], ["b"]),
                    helper.make_node("Concat", ["a", "b"], ["y"], axis=0, name="rows")], "concat.onnx")
    with pytest.raises(ValueError, match="Concat node 'rows': axis 0; clnet concatenates along axis 1"):
        clnet.from_onnx(stacked, ctx)
