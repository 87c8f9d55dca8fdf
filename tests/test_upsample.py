"""Upsample2d (issue 35): PyTorch's nn.Upsample, nearest and bilinear, forward and input gradient;
in a network that trains; through ONNX both ways (Resize)."""

import numpy as np
import pytest

import clnet

from .layer_check import compare

torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("scale, shape", [(2, (3, 5, 4)), (3, (2, 3, 3)), ((1, 2), (2, 4, 5)), ((4, 1), (1, 2, 3))])
def test_upsample_equals_pytorch(ctx, dtype, mode, scale, shape):
    factor = scale if isinstance(scale, int) else tuple(float(s) for s in scale)
    compare(ctx, clnet.Upsample2d(scale, mode), torch.nn.Upsample(scale_factor=factor, mode=mode), shape, 3, dtype)


def test_upsample_in_a_network_through_onnx_both_ways(ctx, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = clnet.InferenceNetwork(ctx, (2, 4, 4), [clnet.Upsample2d(2), clnet.Conv2d(3, 3, activation="relu"),
                                                  clnet.Upsample2d((2, 3), "bilinear"), clnet.GlobalAvgPool2d(),
                                                  clnet.Flatten(), clnet.FullyConnected(2, "softmax")], seed=3)
    x = np.random.default_rng(1).normal(size=(6, 2, 4, 4)).astype(np.float32)
    labels = (x.mean(axis=(1, 2, 3)) > 0).astype(int)
    history = net.fit(x, labels, epochs=3, batch_size=3, optimizer=clnet.Adam(0.05), seed=1, progress=False)
    assert all(np.isfinite(history))
    path = net.to_onnx(tmp_path / "up")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], net.predict_proba(x),
                               rtol=1e-5, atol=1e-6)
    back = clnet.from_onnx(path, ctx)
    assert back.specs == net.specs
    model = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(2, 2, 3),
                                torch.nn.Upsample(scale_factor=3, mode="bilinear"), torch.nn.Flatten())
    torch.onnx.export(model, torch.tensor(x), str(tmp_path / "t.onnx"), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    theirs = clnet.from_onnx(tmp_path / "t.onnx", ctx)
    assert [type(s) for s in theirs.specs] == [clnet.Upsample2d, clnet.Conv2d, clnet.Upsample2d, clnet.Flatten]
    with torch.no_grad():
        np.testing.assert_allclose(theirs.predict(x), model(torch.tensor(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_upsample_refuses_what_it_does_not_do():
    with pytest.raises(ValueError, match="unknown upsampling mode 'bicubic'; choose one of nearest, bilinear"):
        clnet.Upsample2d(2, "bicubic")
    with pytest.raises(ValueError, match="scale_factor must be a whole number >= 1 or a pair of them, got 1.5"):
        clnet.Upsample2d(1.5)


def _model(tmp_path, shape, node, constants):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in constants.items()])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7), str(path))
    return path


@pytest.mark.parametrize("attributes, scales, message", [
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, [1, 1, 1.5, 2],
     r"scales \[1.0, 1.0, 1.5, 2.0\]; clnet's Upsample2d scales height and width by whole numbers"),
    ({"mode": "cubic"}, [1, 1, 2, 2], "mode 'cubic' with 'half_pixel' coordinates; clnet imports nearest"),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 2, 2],
     "mode 'linear' with 'align_corners' coordinates"),
    ({"mode": "nearest"}, [1, 2, 2, 2], r"scales \[1.0, 2.0, 2.0, 2.0\]"),
])
def test_resizes_that_are_not_an_upsample2d_are_refused_with_the_node(ctx, tmp_path, attributes, scales, message):
    from onnx import helper

    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", **attributes)
    with pytest.raises(ValueError, match=f"Resize node 'resize': {message}"):
        clnet.from_onnx(_model(tmp_path, (2, 4, 4), node, {"scales": scales}), ctx)


def test_conv1d_with_asymmetric_pads_is_refused_with_the_node(ctx, tmp_path):
    from onnx import helper

    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3], pads=[0, 2])
    with pytest.raises(ValueError, match=r"Conv node 'conv': asymmetric pads \[0, 2\]; clnet's Conv1d pads both"):
        clnet.from_onnx(_model(tmp_path, (2, 8), node, {"w": np.ones((3, 2, 3))}), ctx)
