"""ONNX export (checked with onnxruntime) and import (of PyTorch's export, checked against PyTorch)."""

import numpy as np
import pytest

import clnet

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install 'clnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")

ALL = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "linear"]


@pytest.mark.parametrize("dtype, activations", [
    (np.float32, ALL),
    (np.float64, ["tanh", "relu", "linear"]),  # onnxruntime has no float64 LeakyRelu, Elu or Sigmoid kernels
])
def test_export_runs_in_onnxruntime_with_clnets_results(ctx, tmp_path, dtype, activations):
    net = clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(7, a) for a in activations]
                                 + [clnet.FullyConnected(3, "softmax")], dtype=dtype, seed=4)
    path = net.to_onnx(tmp_path / "model")
    assert path == tmp_path / "model.onnx"
    session = ort.InferenceSession(str(path))
    for rows in (1, 9):  # the batch dimension is dynamic
        x = np.random.default_rng(rows).normal(size=(rows, 5)).astype(dtype)
        np.testing.assert_allclose(session.run(None, {"x": x})[0], net(x).get(),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32
                                   else 1e-14)
    model = onnx.load(str(path))
    ops = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "leaky_relu": "LeakyRelu", "elu": "Elu",
           "linear": "Identity", "softmax": "Softmax"}
    assert [n.op_type for n in model.graph.node] == [op for a in [*activations, "softmax"] for op in ("Gemm", ops[a])]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_then_import_is_the_same_network(ctx, tmp_path):
    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(6, "elu", dropout=0.5), clnet.FullyConnected(2)],
                                 seed=2)
    back = clnet.from_onnx(net.to_onnx(tmp_path / "m.onnx"), ctx)
    assert [(la.outputs, la.activation) for la in back.layers] == [(6, "elu"), (2, "linear")]
    for a, b in zip(net.parameters(), back.parameters()):
        np.testing.assert_array_equal(a.get(), b.get())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's TorchScript-based exporter
def test_a_pytorch_mlp_imports_with_pytorchs_predictions(ctx, tmp_path):
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12),
                                torch.nn.Tanh(), torch.nn.Linear(12, 10), torch.nn.LeakyReLU(0.01),
                                torch.nn.Linear(10, 6), torch.nn.ELU(), torch.nn.Linear(6, 4), torch.nn.Sigmoid(),
                                torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1)).eval()
    path = tmp_path / "torch.onnx"
    x = torch.randn(5, 8)
    torch.onnx.export(model, x, str(path), dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    net = clnet.from_onnx(path, ctx)
    assert [la.activation for la in net.layers] == ["relu", "tanh", "leaky_relu", "elu", "sigmoid", "softmax"]
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(net(x.numpy()).get(), expected, rtol=1e-5, atol=1e-6)


def test_matmul_and_add_import_and_unsupported_operators_are_named(ctx, tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)

    def model(nodes, name):
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
                                  [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
        path = tmp_path / name
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        return path

    path = model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["z"]),
                  helper.make_node("Tanh", ["z"], ["y"])], "matmul.onnx")
    net = clnet.from_onnx(path, ctx)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(net(x).get(), np.tanh(x @ w + b), rtol=1e-5, atol=1e-6)
    path = model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["z"]),
                  helper.make_node("Gelu", ["z"], ["y"], domain="")], "gelu.onnx")
    with pytest.raises(ValueError, match="unsupported ONNX operator 'Gelu'.*clnet imports Gemm, MatMul, Add"):
        clnet.from_onnx(path, ctx)


# -- convolutional networks (issue 21) -------------------------------------------------------------

def cnn_layers():
    return [clnet.Conv2d(6, 3, padding=1, activation="relu"), clnet.BatchNorm(), clnet.MaxPool2d(2),
            clnet.Conv2d(6, 2, padding="same", groups=3), clnet.Activation(("leaky_relu", 0.2)),
            clnet.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), clnet.Conv2d(8, 1, stride=1),
            clnet.GlobalAvgPool2d(), clnet.Flatten(), clnet.FullyConnected(5, "tanh"), clnet.BatchNorm(),
            clnet.FullyConnected(3, "softmax")]


def test_a_cnn_export_runs_in_onnxruntime_and_imports_back(ctx, tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 2, 9, 8)).astype(np.float32)
    net = clnet.InferenceNetwork(ctx, (2, 9, 8), cnn_layers(), seed=3)
    net.fit(x, np.arange(4) % 3, "cross_entropy", epochs=2, batch_size=4, progress=False)  # running statistics
    path = net.to_onnx(tmp_path / "cnn.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["Conv", "Relu", "BatchNormalization", "MaxPool", "Conv", "Identity", "LeakyRelu", "AveragePool",
                   "Conv", "Identity", "GlobalAveragePool", "Flatten", "Gemm", "Tanh", "BatchNormalization", "Gemm",
                   "Softmax"]
    session = ort.InferenceSession(str(path))
    for rows in (1, 4):
        np.testing.assert_allclose(session.run(None, {"x": x[:rows]})[0], net(x[:rows]).get(), rtol=1e-5, atol=1e-6)
    back = clnet.from_onnx(path, ctx)
    assert back.specs == net.specs
    np.testing.assert_allclose(back(x).get(), net(x).get(), rtol=1e-6, atol=1e-7)


def torch_cnn(torch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
        torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(24, 10), torch.nn.BatchNorm1d(10),
        torch.nn.ReLU(), torch.nn.Linear(10, 3), torch.nn.Softmax(dim=1))
    with torch.no_grad():  # trained-looking statistics
        for module in model:
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("exporter", ["torchscript", "torchscript, batch norm kept", "dynamo"])
def test_a_pytorch_cnn_with_batch_norm_imports_with_pytorchs_predictions(ctx, tmp_path, exporter):
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript", reason="torch's dynamo exporter needs onnxscript (the test extra)")
    model, x = torch_cnn(torch), torch.randn(5, 1, 16, 16)
    path = tmp_path / "torch_cnn.onnx"
    if exporter == "dynamo":
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"], output_names=["y"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    else:
        training = torch.onnx.TrainingMode.PRESERVE if "kept" in exporter else torch.onnx.TrainingMode.EVAL
        torch.onnx.export(model, x, str(path), dynamo=False, training=training, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    net = clnet.from_onnx(path, ctx)
    if "kept" in exporter:
        assert sum(isinstance(spec, clnet.BatchNorm) for spec in net.specs) == 3
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(net(x.numpy()).get(), expected, rtol=1e-5, atol=1e-6)


def test_cnn_attributes_clnet_does_not_have_are_named(ctx, tmp_path):
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    x = torch.randn(2, 1, 8, 8)
    for module, message in [(torch.nn.MaxPool2d(3, stride=2, ceil_mode=True), "MaxPool node .*ceil_mode=1"),
                            (torch.nn.Conv2d(1, 2, 3, padding=(1, 0), padding_mode="zeros"), None)]:
        path = tmp_path / "m.onnx"
        model = torch.nn.Sequential(module, torch.nn.Flatten(), torch.nn.LazyLinear(2))
        model(x)
        torch.onnx.export(model.eval(), x, str(path), dynamo=False)
        if message is None:  # a supported one, for contrast
            clnet.from_onnx(path, ctx)
            continue
        with pytest.raises(ValueError, match=message):
            clnet.from_onnx(path, ctx)
    from onnx import TensorProto, helper, numpy_helper

    w = np.ones((2, 1, 3, 3), np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, 1, 1], name="asym")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 7, 7])],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "asym.onnx"))
    with pytest.raises(ValueError, match=r"Conv node 'asym': asymmetric pads \[0, 0, 1, 1\]"):
        clnet.from_onnx(tmp_path / "asym.onnx", ctx)


OLD_ONNXRUNTIME = "onnxruntime==1.15.0"  # the oldest with wheels for Python 3.11; its IR limit is 9
RUN_OLD = """import sys, numpy as np, onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print(ort.__version__, session.run(None, {"x": np.ones((2, 4), np.float32)})[0].tolist())"""


@pytest.mark.parametrize("opset, ir", [(13, 7), (15, 8), (17, 8), (21, 10)])
def test_export_declares_the_ir_version_of_its_opset(ctx, tmp_path, opset, ir):
    import onnx

    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(3, "tanh"), clnet.FullyConnected(2, "softmax")])
    model = onnx.load(str(net.to_onnx(tmp_path / "m.onnx", opset=opset)))
    assert model.ir_version == ir and model.opset_import[0].version == opset
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], net(x).get(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="opset must be one of 13..21, got 12"):
        net.to_onnx(tmp_path / "m.onnx", opset=12)


def test_an_older_onnxruntime_reads_the_default_export(ctx, tmp_path):
    import json
    import os
    import subprocess
    import sys

    target = tmp_path / "old"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target),
                                OLD_ONNXRUNTIME, "numpy<2"], capture_output=True, text=True, timeout=300)
    if installed.returncode != 0:
        pytest.skip(f"{OLD_ONNXRUNTIME} cannot be installed here: {installed.stderr.strip()[-300:]}")
    net = clnet.InferenceNetwork(ctx, 4, [clnet.FullyConnected(3, "relu"), clnet.FullyConnected(2, "sigmoid")])
    path = net.to_onnx(tmp_path / "m.onnx")
    result = subprocess.run([sys.executable, "-c", RUN_OLD, str(path)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr[-2000:]
    version, output = result.stdout.split(" ", 1)
    assert version == "1.15.0"
    np.testing.assert_allclose(np.array(json.loads(output)), net(np.ones((2, 4), np.float32)).get(), rtol=1e-6)
