"""Conv1d (issue 35): PyTorch's nn.Conv1d, forward and gradients, in a network that trains, and
through ONNX both ways (clnet's export in onnxruntime and back; torch.onnx.export's imported)."""

import numpy as np
import pytest

import clnet

from .layer_check import compare

torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")


@pytest.mark.parametrize("out, kernel, options, shape", [
    (5, 3, {}, (3, 11)),
    (4, 3, {"stride": 2, "padding": 1, "dilation": 2}, (2, 13)),
    (6, 5, {"padding": "same", "groups": 2}, (4, 9)),
    (4, 3, {"groups": 4, "bias": False}, (4, 8)),  # depthwise
    (3, 1, {}, (6, 7)),  # a 1 x 1
])
def test_conv1d_equals_pytorch(ctx, dtype, out, kernel, options, shape):
    compare(ctx, clnet.Conv1d(out, kernel, **options), torch.nn.Conv1d(shape[0], out, kernel, **options), shape, 3,
            dtype)


def test_conv1d_with_its_activation_trains_and_saves(ctx, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 2, 16))
    labels = (x[:, 0, :8].sum(axis=1) > x[:, 1, 8:].sum(axis=1)).astype(int)
    net = clnet.InferenceNetwork(ctx, (2, 16), [clnet.Conv1d(4, 5, padding=2, activation="relu"), clnet.Flatten(),
                                                clnet.FullyConnected(2, "softmax")], dtype=np.float64, seed=2)
    history = net.fit(x, labels, epochs=30, batch_size=8, optimizer=clnet.Adam(0.02), seed=1, progress=False)
    assert history[-1] < 0.5 * history[0]
    back = clnet.load(net.save(tmp_path / "conv1d"), ctx)
    assert back.specs == net.specs
    np.testing.assert_array_equal(back.predict_proba(x), net.predict_proba(x))
    with pytest.raises(ValueError, match=r"Conv1d takes \(batch, channels, length\) inputs, got samples of shape"):
        clnet.InferenceNetwork(ctx, (2, 4, 4), [clnet.Conv1d(2, 3)])
    with pytest.raises(ValueError, match="kernel_size must be a whole number >= 1, got 0"):
        clnet.Conv1d(2, 0)


def test_conv1d_through_onnx_both_ways(ctx, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = clnet.InferenceNetwork(ctx, (3, 12), [clnet.Conv1d(4, 3, stride=2, padding=1, activation="gelu"),
                                                clnet.Conv1d(4, 4, padding="same", groups=4), clnet.Flatten(),
                                                clnet.FullyConnected(2, "linear")], seed=1)
    x = np.random.default_rng(0).normal(size=(5, 3, 12)).astype(np.float32)
    path = net.to_onnx(tmp_path / "c1")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], net.predict(x), rtol=1e-5,
                               atol=1e-5)
    back = clnet.from_onnx(path, ctx)
    assert back.specs == net.specs
    np.testing.assert_allclose(back.predict(x), net.predict(x), rtol=1e-6, atol=1e-6)
    model = torch.nn.Sequential(torch.nn.Conv1d(3, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv1d(6, 2, 3),
                                torch.nn.Flatten(), torch.nn.Linear(20, 3))
    torch.onnx.export(model, torch.tensor(x), str(tmp_path / "t.onnx"), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    theirs = clnet.from_onnx(tmp_path / "t.onnx", ctx)
    assert [type(s) for s in theirs.specs] == [clnet.Conv1d, clnet.Conv1d, clnet.Flatten, clnet.FullyConnected]
    with torch.no_grad():
        np.testing.assert_allclose(theirs.predict(x), model(torch.tensor(x)).numpy(), rtol=1e-5, atol=1e-5)
