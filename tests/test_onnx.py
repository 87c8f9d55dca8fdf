"""ONNX export (checked with onnxruntime) and import (of PyTorch's export, checked against PyTorch)."""

import numpy as np
import pytest

import clnet

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install 'clnet[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")

ALL = ["sigmoid", "tanh", "relu", "relu6", "leaky_relu", "elu", "linear"]


@pytest.mark.parametrize("dtype, activations, output", [
    (np.float32, ALL, "softmax"),
    (np.float32, ["relu6"], "log_softmax"),
    (np.float64, ["tanh", "relu", "linear"], "softmax"),  # no float64 LeakyRelu, Elu or Sigmoid in onnxruntime
])
def test_export_runs_in_onnxruntime_with_clnets_results(ctx, tmp_path, dtype, activations, output):
    net = clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(7, a) for a in activations]
                                 + [clnet.FullyConnected(3, output)], dtype=dtype, seed=4)
    path = net.to_onnx(tmp_path / "model")
    assert path == tmp_path / "model.onnx"
    session = ort.InferenceSession(str(path))
    for rows in (1, 9):  # the batch dimension is dynamic
        x = np.random.default_rng(rows).normal(size=(rows, 5)).astype(dtype)
        np.testing.assert_allclose(session.run(None, {"x": x})[0], net(x).get(),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32
                                   else 1e-14)
    model = onnx.load(str(path))
    ops = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "relu6": "Clip", "leaky_relu": "LeakyRelu",
           "elu": "Elu", "linear": "Identity", "softmax": "Softmax", "log_softmax": "LogSoftmax"}
    assert [n.op_type for n in model.graph.node] == [op for a in [*activations, output] for op in ("Gemm", ops[a])]
    assert [la.activation for la in clnet.from_onnx(path, ctx).layers] == [*activations, output]
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
    for module, message in [(torch.nn.MaxPool2d(3, stride=2, dilation=2), "MaxPool node .*dilations \\[2, 2\\]"),
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


# -- what other exporters write (issue 23) ---------------------------------------------------------


def chain_model(tmp_path, nodes, constants, name, opset=13, outputs=2):
    """A model of x (n, 3) -> `nodes` -> y (n, outputs), with numpy arrays as initializers."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", outputs])],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()])
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7), str(path))
    return path


@pytest.mark.parametrize("opset", [10, 13])  # Clip's bounds: attributes before opset 11, inputs after
def test_cast_transposed_weights_clip_leaky_relu_and_log_softmax_match_onnxruntime(ctx, tmp_path, opset):
    from onnx import TensorProto, helper

    rng = np.random.default_rng(5)
    w1, w2 = rng.normal(size=(4, 3)).astype(np.float32) * 3, rng.normal(size=(4, 4)).astype(np.float32)
    w3, b = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    clip = (helper.make_node("Clip", ["h1", "zero", "six"], ["c1"]) if opset >= 11
            else helper.make_node("Clip", ["h1"], ["c1"], min=0.0, max=6.0))
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["w1"], ["w1t"], perm=[1, 0]),  # a constant: folded
             helper.make_node("MatMul", ["xf", "w1t"], ["h1"]), clip,
             helper.make_node("Gemm", ["c1", "w2", "b2"], ["h2"], transB=1),  # C optional from opset 11
             helper.make_node("LeakyRelu", ["h2"], ["l2"], alpha=0.2),
             helper.make_node("Gemm", ["l2", "w3", "b"], ["h3"], transB=1),
             helper.make_node("LogSoftmax", ["h3"], ["y"], axis=1)]
    constants = {"w1": w1, "w2": w2, "w3": w3, "b": b, "b2": -b[:1].repeat(4), "zero": np.float32(0),
                 "six": np.float32(6)}
    path = chain_model(tmp_path, nodes, constants, "chain.onnx", opset)
    net = clnet.from_onnx(path, ctx)
    assert [clnet.nn.activation.activations.describe(la.activation, la.alpha) for la in net.layers] == [
        "relu6", ("leaky_relu", 0.2), "log_softmax"]
    x = rng.normal(size=(6, 3)).astype(np.float32)
    expected = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert (x @ w1.T > 6).any() and (x @ w1.T < 0).any()  # both of Clip's bounds are reached
    np.testing.assert_allclose(net(x).get(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.predict_proba(x), np.exp(expected), rtol=1e-5, atol=1e-6)


def test_casts_and_clips_clnet_has_no_layer_for_are_named(ctx, tmp_path):
    from onnx import TensorProto, helper

    w = np.ones((2, 3), np.float32)
    cast = chain_model(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
                                  helper.make_node("Cast", ["h"], ["y"], to=TensorProto.INT64, name="to_int")],
                       {"w": w}, "cast.onnx")
    with pytest.raises(ValueError, match="Cast node 'to_int': a cast to int64; clnet's networks compute in float32"):
        clnet.from_onnx(cast, ctx)
    clip = chain_model(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
                                  helper.make_node("Clip", ["h", "lo", "hi"], ["y"], name="hardtanh")],
                       {"w": w, "lo": np.float32(-1), "hi": np.float32(1)}, "clip.onnx")
    with pytest.raises(ValueError, match=r"Clip node 'hardtanh': Clip\(-1.0, 1.0\); clnet imports Clip\(0, 6\) as "
                                         r"relu6 and Clip\(0\) as relu"):
        clnet.from_onnx(clip, ctx)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's TorchScript-based exporter
def test_a_pytorch_mlp_with_batch_norm_relu6_and_log_softmax_imports_with_pytorchs_predictions(ctx, tmp_path):
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU6(),
                                torch.nn.Linear(8, 3), torch.nn.LogSoftmax(dim=1)).eval()
    with torch.no_grad():  # running statistics unlike a fresh layer's
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    x = torch.randn(7, 6) * 4
    path = tmp_path / "bn.onnx"
    torch.onnx.export(model, x, str(path), dynamo=False, do_constant_folding=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    assert "BatchNormalization" in [n.op_type for n in onnx.load(str(path)).graph.node]
    net = clnet.from_onnx(path, ctx)
    # the activation after a BatchNormalization fused into it (one pass over the values, as into a Conv)
    assert [type(la.spec).__name__ for la in net.layers] == ["FullyConnected", "BatchNorm", "FullyConnected"]
    assert net.specs[1].activation == "relu6"
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(net(x.numpy()).get(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind, classes", [("classifier", 3), ("classifier", 2), ("regressor", None)])
def test_scikit_learns_mlps_import_with_their_predictions(ctx, tmp_path, caplog, kind, classes):
    """MLPClassifier and MLPRegressor through skl2onnx: Cast, MatMul + Add, the classifier head
    left out (and for two classes the [1 - p, p] of one sigmoid output)."""
    skl2onnx = pytest.importorskip("skl2onnx", reason="needs skl2onnx (the test extra)")
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    rng = np.random.default_rng(classes or 0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    if kind == "classifier":
        y = np.array([7, 3, 5][:classes])[(x[:, 0] + x[:, 1] > 0).astype(int) + (classes == 3) * (x[:, 2] > 1)]
        model = MLPClassifier(hidden_layer_sizes=(10, 6), max_iter=200, random_state=0).fit(x, y)
    else:
        model = MLPRegressor(hidden_layer_sizes=(10, 6), max_iter=200, random_state=0).fit(x, x @ rng.normal(size=5))
    path = tmp_path / f"{kind}.onnx"
    path.write_bytes(skl2onnx.to_onnx(model, x[:1]).SerializeToString())
    with caplog.at_level("INFO", logger="clnet"):
        net = clnet.from_onnx(path, ctx)
    if kind == "regressor":
        assert net.output_activation == "linear"
        np.testing.assert_allclose(net.predict(x), model.predict(x), rtol=1e-5, atol=1e-5)
        return
    assert net.output_activation == ("softmax" if classes == 3 else "sigmoid")
    assert "the classifier head (ArgMax, ArrayFeatureExtractor" in caplog.text
    assert f"the model's labels, in that order: {model.classes_.tolist()}" in caplog.text
    np.testing.assert_allclose(net.predict_proba(x), model.predict_proba(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.classes_[net.predict(x)], model.predict(x))


def test_the_onnx_table_holds_every_activation():
    from clnet.train import onnx_activations

    assert set(onnx_activations.FORMS) == set(clnet.ACTIVATIONS)
    for op, form in onnx_activations.OPS.items():  # every operator that imports as one reads it
        assert form.read is not None, op


@pytest.mark.parametrize("name", clnet.ACTIVATIONS)
def test_every_activation_exports_and_imports_back_to_itself(ctx, tmp_path, name):
    """Fused into a layer and alone (a network of one activation is a network too), at the
    default opset and at the newest; the export runs in onnxruntime (float32: its float64
    kernels lack some activations) with clnet's results."""
    x = np.random.default_rng(3).normal(size=(6, 4)) * 4
    for layers in ([clnet.FullyConnected(5, name)], [clnet.Activation(name)]):
        for dtype in (np.float64, np.float32):
            net = clnet.InferenceNetwork(ctx, 4, layers, dtype=dtype, seed=2)
            for opset in (13, 21):
                path = net.to_onnx(tmp_path / f"{name}.onnx", opset=opset)
                back = clnet.from_onnx(path, ctx)
                assert [(type(s), s.activation) for s in back.specs] == [(type(s), s.activation) for s in net.specs]
                tol = 1e-12 if dtype == np.float64 else 1e-5
                np.testing.assert_allclose(back(x).get(), net(x).get(), rtol=tol, atol=tol)
                if dtype == np.float32:
                    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                    (found,) = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})
                    np.testing.assert_allclose(found, net(x).get(), rtol=1e-5, atol=1e-5)


def test_a_network_without_weights_imports(ctx, tmp_path):
    net = clnet.InferenceNetwork(ctx, (2, 6, 6), [clnet.MaxPool2d(2), clnet.BatchNorm(), clnet.GlobalAvgPool2d()],
                                 dtype=np.float32)
    net.set_arrays({**net.host_arrays(), "layer_1.running_mean": np.array([0.5, -1], np.float32)})
    back = clnet.from_onnx(net.to_onnx(tmp_path / "pool.onnx"), ctx)
    x = np.random.default_rng(0).normal(size=(3, 2, 6, 6)).astype(np.float32)
    assert back.specs == net.specs and back.dtype == np.float32
    np.testing.assert_allclose(back(x).get(), net(x).get(), rtol=1e-6)


def test_unsupported_nodes_are_all_named_in_one_error(ctx, tmp_path):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sin", ["a"], ["b"], name="sine"),
             helper.make_node("Floor", ["b"], ["c"], name="floor"), helper.make_node("Sin", ["c"], ["y"], name="again")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match=r"unsupported ONNX operators 'Sin' \(nodes 'sine', 'again'\); 'Floor' "
                                         r"\(node 'floor'\); clnet imports Gemm"):
        clnet.from_onnx(tmp_path / "m.onnx", ctx)


def test_branches_that_do_not_nest_are_refused_with_the_node(ctx, tmp_path):
    """a feeds both the sum and the product after it: no nesting of blocks computes that once."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"], name="first"), helper.make_node("Tanh", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"], name="sum"), helper.make_node("Sigmoid", ["c"], ["d"]),
             helper.make_node("Mul", ["d", "b"], ["y"], name="product")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="node .*used by two branches that do not meet"):
        clnet.from_onnx(tmp_path / "m.onnx", ctx)


def test_a_reshape_by_a_computed_shape_is_a_flatten_and_onnxruntime_agrees(ctx, tmp_path):
    """The dynamo exporter's form for a dynamic batch: Shape -> Gather -> Unsqueeze -> Concat with
    -1 -> Reshape, before the head; the shape computation is dropped, the Reshape flattens."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    w, fc = rng.normal(size=(4, 2, 3, 3)).astype(np.float32), rng.normal(size=(3, 4 * 4 * 4)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Shape", ["r"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             helper.make_node("Unsqueeze", ["b", "axes"], ["b1"]),
             helper.make_node("Concat", ["b1", "minus_one"], ["shape"], axis=0),
             helper.make_node("Reshape", ["r", "shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc"], ["y"], transB=1)]
    constants = {"w": w, "fc": fc, "zero": np.array(0, np.int64), "axes": np.array([0], np.int64),
                 "minus_one": np.array([-1], np.int64)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
                              [numpy_helper.from_array(v, k) for k, v in constants.items()])
    path = tmp_path / "dynamic.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7), str(path))
    net = clnet.from_onnx(path, ctx)
    assert [type(s).__name__ for s in net.specs] == ["Conv2d", "Flatten", "FullyConnected"]
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")
    x = rng.normal(size=(5, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(net(x).get(), ort.InferenceSession(str(path)).run(None, {"x": x})[0], rtol=1e-5,
                               atol=1e-5)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dynamo", [False, True])
def test_pytorchs_own_forms_of_the_newer_activations_import(ctx, tmp_path, dynamo):
    """What torch.onnx.export writes for GELU (Erf form, and tanh), SiLU, Hardswish and
    Hardsigmoid at opset 13 (TorchScript) or 18 (dynamo): each one clnet activation again."""
    torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
    torch.manual_seed(2)
    n = torch.nn
    model = n.Sequential(n.Linear(5, 6), n.GELU(), n.Linear(6, 6), n.SiLU(), n.Linear(6, 6), n.Hardswish(),
                         n.Linear(6, 6), n.GELU(approximate="tanh"), n.Linear(6, 6), n.Hardsigmoid(),
                         n.Linear(6, 3)).eval()
    x = torch.randn(4, 5) * 3
    path = tmp_path / "acts.onnx"
    options = {"dynamo": True} if dynamo else {"dynamo": False, "opset_version": 13}
    torch.onnx.export(model, (x,), str(path), input_names=["x"], **options)
    net = clnet.from_onnx(path, ctx)
    assert [s.activation for s in net.specs] == ["gelu", "silu", "hardswish", "gelu_tanh", "hardsigmoid", "linear"]
    with torch.no_grad():
        np.testing.assert_allclose(net(x.numpy()).get(), model(x).numpy(), rtol=1e-5, atol=1e-5)
