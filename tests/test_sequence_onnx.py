"""ONNX for sequence models (issue 31): clnet's GPT exports (Gather, LayerNormalization at opset
17, attention's MatMul/Reshape/Transpose/Softmax) and runs in onnxruntime with clnet's outputs and
imports back; PyTorch's TransformerEncoder classifiers (post- and pre-LayerNorm, causal or not),
written by both of torch.onnx.export's exporters, import with PyTorch's predictions."""

import numpy as np
import pytest

import clnet

torch = pytest.importorskip("torch", reason="needs PyTorch (make test installs the CPU build)")
onnxruntime = pytest.importorskip("onnxruntime", reason="needs onnxruntime (make test installs it)")


def test_a_gpt_exports_runs_in_onnxruntime_and_imports_back(ctx, tmp_path):
    net = clnet.InferenceNetwork(ctx, 9, clnet.nn.gpt(13, 9, 12, 3, 2), seed=1)
    ids = np.random.default_rng(0).integers(0, 13, (4, 9))
    expected = net(ids).get()
    path = net.to_onnx(tmp_path / "gpt")  # opset None: 17, LayerNormalization's first
    session = onnxruntime.InferenceSession(str(path))
    np.testing.assert_allclose(session.run(None, {"x": ids.astype(np.int64)})[0], expected, rtol=1e-4, atol=1e-5)
    back = clnet.from_onnx(path, ctx)
    assert back.specs == net.specs
    np.testing.assert_allclose(back(ids).get(), expected, rtol=1e-5, atol=1e-6)
    for opset in (13, 16):  # LayerNorm as its primitive nodes (ReduceMean, Sub, Mul, Sqrt, Div), read back as one
        session = onnxruntime.InferenceSession(str(net.to_onnx(tmp_path / f"old{opset}", opset=opset)))
        np.testing.assert_allclose(session.run(None, {"x": ids.astype(np.int64)})[0], expected, rtol=1e-4, atol=1e-5)
        back = clnet.from_onnx(tmp_path / f"old{opset}.onnx", ctx)
        assert back.specs == net.specs
        np.testing.assert_allclose(back(ids).get(), expected, rtol=1e-5, atol=1e-6)
    pooled = clnet.InferenceNetwork(ctx, 6, [clnet.Embedding(5, 4), clnet.MultiHeadAttention(2), clnet.SequenceMean(),
                                            clnet.FullyConnected(3, "softmax")], seed=2)
    x = np.random.default_rng(1).integers(0, 5, (3, 6))
    for opset in (13, 18):  # ReduceMean's axes: an attribute, then an input
        session = onnxruntime.InferenceSession(str(pooled.to_onnx(tmp_path / f"pooled{opset}", opset=opset)))
        np.testing.assert_allclose(session.run(None, {"x": x})[0], pooled(x).get(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(clnet.from_onnx(tmp_path / f"pooled{opset}.onnx", ctx)(x).get(),
                                   pooled(x).get(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [13, 16])
def test_pytorchs_layer_norm_below_opset_17_imports_as_a_layer_norm(ctx, tmp_path, opset):
    """torch.onnx.export writes nn.LayerNorm as ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div,
    Mul and Add where LayerNormalization does not exist yet."""
    model = torch.nn.Sequential(torch.nn.LayerNorm(8, eps=1e-4), torch.nn.Linear(8, 4), torch.nn.Tanh())
    with torch.no_grad():
        model[0].weight.normal_()
        model[0].bias.normal_()
    x = np.random.default_rng(2).normal(size=(3, 5, 8)).astype(np.float32)
    path = tmp_path / "ln.onnx"
    torch.onnx.export(model, torch.tensor(x), str(path), opset_version=opset, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    net = clnet.from_onnx(path, ctx)
    assert [type(s) for s in net.specs] == [clnet.LayerNorm, clnet.FullyConnected]
    assert net.specs[0].eps == pytest.approx(1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(net.predict(x), model(torch.tensor(x)).numpy(), rtol=1e-5, atol=1e-6)


class Classifier(torch.nn.Module):
    """Embedding, a learned position, a TransformerEncoder, the mean over positions, a linear head."""

    def __init__(self, norm_first, causal, seq=5):
        super().__init__()
        self.emb, self.pos = torch.nn.Embedding(20, 8), torch.nn.Parameter(torch.randn(seq, 8) * 0.1)
        layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(8, 3)
        self.mask = torch.nn.Transformer.generate_square_subsequent_mask(seq) if causal else None

    def forward(self, ids):
        x = self.encoder(self.emb(ids) + self.pos, mask=self.mask, is_causal=self.mask is not None)
        return self.head(x.mean(dim=1))


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize(("norm_first", "causal"), [(False, False), (True, True)])
def test_a_pytorch_transformer_encoder_classifier_imports_with_its_predictions(ctx, tmp_path, dynamo, norm_first,
                                                                               causal):
    torch.manual_seed(0)
    model = Classifier(norm_first, causal).eval()
    ids = torch.randint(0, 20, (2, 5))
    path = tmp_path / "encoder.onnx"
    options = {"dynamo": True} if dynamo else {"dynamo": False, "opset_version": 17, "input_names": ["ids"],
                                               "dynamic_axes": {"ids": {0: "batch"}}}
    torch.onnx.export(model, (ids,), str(path), **options)
    net = clnet.from_onnx(path, ctx)
    attention = [s for spec in net.specs if isinstance(spec, clnet.Residual) for s in spec.branches[0]
                 if isinstance(s, clnet.MultiHeadAttention)] + [s for s in net.specs
                                                                if isinstance(s, clnet.MultiHeadAttention)]
    assert [(a.heads, a.causal) for a in attention] == [(2, causal)] * 2
    x = np.random.default_rng(1).integers(0, 20, (2, 5))  # the dynamo's export holds the batch of 2
    with torch.no_grad():
        expected = model(torch.tensor(x)).numpy()
    np.testing.assert_allclose(net(x).get(), expected, rtol=1e-4, atol=1e-5)
