"""torchvision's classifiers (issue 30), exported by both of torch.onnx.export's exporters with
random weights and non-trivial batch-norm statistics, imported by clnet: PyTorch's outputs
(float32, 1e-4 relative), and clnet's own export of each imported network in onnxruntime.
Small images and batch 2; alexnet and vgg16_bn at 224 x 224, where their adaptive pooling is a
plain one (the exporters write other sizes as index arithmetic)."""

import numpy as np
import pytest

import clnet

torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")
models = pytest.importorskip("clnet.app.torchvision_models")
try:
    models.load_torchvision()
except ImportError:
    pytest.skip("needs torchvision (make test installs it without its dependencies)", allow_module_level=True)

SIZES = {"resnet18": 32, "resnet50": 32, "mobilenet_v2": 32, "mobilenet_v3_small": 32, "densenet121": 32,
         "squeezenet1_1": 48, "efficientnet_b0": 32, "vgg16_bn": 224, "alexnet": 224}


def close(found, expected):
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", SIZES)
def test_a_torchvision_classifier_imports_with_pytorchs_outputs(ctx, tmp_path, name, exporter):
    model = models.classifier(name, seed=1, classes=10)
    x = np.random.default_rng(2).normal(size=(2, 3, SIZES[name], SIZES[name])).astype(np.float32)
    path = models.export(model, x, tmp_path / f"{name}.onnx", dynamo=exporter == "dynamo")
    net = clnet.from_onnx(path, ctx)
    with torch.no_grad():
        expected = model(torch.tensor(x)).numpy()
    found = net(x).get()
    close(found, expected)
    assert any(isinstance(s, clnet.nn.Branches) for s in net.specs) == (name not in ("vgg16_bn", "alexnet"))
    if exporter == "legacy":  # clnet's export of what it imported, in onnxruntime
        session = ort.InferenceSession(str(net.to_onnx(tmp_path / "again.onnx")))
        close(session.run(None, {"x": x})[0], found)


@pytest.mark.filterwarnings("ignore")
def test_the_fine_tuning_example_trains_the_head_alone(ctx):
    pytest.importorskip("sklearn", reason="needs scikit-learn (the examples extra)")
    from clnet.app.demo import load_example

    result = load_example("finetune").run(ctx, epochs=4, progress=False)
    assert result["frozen"] and result["onnxruntime"]
    assert result["accuracy"] > result["chance"] + 0.3 and result["loaded"] == result["accuracy"]
    assert result["trainable"] == 512 * 10 + 10  # the new head's weights and bias, nothing else
