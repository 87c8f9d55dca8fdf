"""Every layer type (the registry's) round-trips clnet -> ONNX -> clnet with the same outputs, and
its export runs in onnxruntime with clnet's (issue 35). A layer type added to the registry fails
here until it has an example."""

import numpy as np
import pytest

import clnet
from clnet.nn import registry

ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")

C, F = clnet.Conv2d, clnet.FullyConnected
EXAMPLES = {  # a layer type: (sample shape, layers that hold it; ids: inputs are token ids)
    "Activation": (3, [F(4, "linear"), clnet.Activation("elu")]),
    "AdaptiveAvgPool2d": ((2, 6, 6), [clnet.AdaptiveAvgPool2d(3)]),
    "Add": (4, [clnet.Add([F(4, "tanh")], [F(4, "relu")])]),
    "AvgPool2d": ((2, 6, 6), [clnet.AvgPool2d(3, stride=2, padding=1)]),
    "BatchNorm": ((2, 4, 4), [C(3, 3, bias=False), clnet.BatchNorm(activation="relu")]),  # Relu fused back
    "Concat": ((2, 5, 5), [clnet.Concat([C(2, 1, activation="relu")], [C(3, 3, padding=1)])]),
    "Conv1d": ((3, 10), [clnet.Conv1d(4, 3, stride=2, padding=1, activation="silu")]),
    "Conv2d": ((2, 5, 5), [C(3, 3, padding=(1, 0), activation="relu6")]),
    "Dropout": (4, [F(5, "relu"), clnet.Dropout(0.3), F(2, "softmax")]),
    "Embedding": ("ids", [clnet.Embedding(11, 4), clnet.SequenceMean(), F(3, "softmax")]),
    "Flatten": ((2, 3, 3), [clnet.Flatten(), F(2, "sigmoid")]),
    "FullyConnected": (4, [F(3, "gelu_tanh"), F(2, "log_softmax")]),
    "GlobalAvgPool2d": ((3, 4, 4), [clnet.GlobalAvgPool2d(), clnet.Flatten()]),
    "LayerNorm": ((5, 4), [clnet.LayerNorm(4), F(3, "tanh")]),
    "MaxPool2d": ((2, 7, 7), [clnet.MaxPool2d(3, stride=2, ceil_mode=True)]),
    "MultiHeadAttention": ((5, 8), [clnet.MultiHeadAttention(2, causal=True)]),
    "Multiply": ((3, 4, 4), [clnet.Multiply([], [clnet.GlobalAvgPool2d(), clnet.Flatten(), F(3, "sigmoid")])]),
    "PositionalEmbedding": ("ids", [clnet.Embedding(11, 4), clnet.PositionalEmbedding()]),
    "Residual": (4, [clnet.Residual([F(4, "tanh"), F(4, "linear")])]),
    "SequenceMean": ((5, 3), [clnet.SequenceMean()]),
    "Upsample2d": ((2, 3, 3), [clnet.Upsample2d(2, "bilinear"), clnet.Upsample2d((1, 2))]),
}
# what imports as another type of the same outputs: ONNX has no adaptive pooling (an even one is an
# AveragePool), and a sum of two branches reads as a residual block whose shortcut is the second
SAME_AS = {"AdaptiveAvgPool2d": "AvgPool2d", "Add": "Residual"}


def test_every_registered_layer_type_has_an_example():
    clnets = {name for name, cls in registry.registered().items() if cls.__module__.startswith("clnet.")}
    assert set(EXAMPLES) == clnets  # (other tests register types of their own)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_layer_type_round_trips_through_onnx_and_runs_in_onnxruntime(ctx, tmp_path, name):
    shape, layers = EXAMPLES[name]
    rng = np.random.default_rng(5)
    ids = shape == "ids"
    net = clnet.InferenceNetwork(ctx, 6 if ids else shape, layers, seed=2)
    net.set_arrays({key: (np.abs(a) + 0.5 if key.endswith("running_var") else rng.normal(size=a.shape))
                    for key, a in net.host_arrays().items()})  # every array matters, the statistics too
    x = rng.integers(0, 11, (4, 6)) if ids else rng.normal(size=(4, *np.atleast_1d(shape))).astype(np.float32)
    expected = net(x).get()
    path = net.to_onnx(tmp_path / name)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = session.run(None, {session.get_inputs()[0].name: x.astype(np.int64) if ids else x})[0]
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5)
    back = clnet.from_onnx(path, ctx)
    kept = [s for s in net.specs if not isinstance(s, clnet.Dropout)]  # dropout: nothing at inference
    if name in SAME_AS:
        assert [type(s).__name__ for s in back.specs] == [SAME_AS.get(type(s).__name__, type(s).__name__) for s in kept]
    else:
        assert back.specs == kept
    np.testing.assert_allclose(back(x).get(), expected, rtol=1e-5, atol=1e-6)
