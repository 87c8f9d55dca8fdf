"""ONNX export and import of fully-connected networks (the `onnx` package: clnet[onnx]).

Export writes one Gemm (transB=1) and one activation node per layer (Sigmoid, Tanh, Relu,
LeakyRelu alpha=0.01, Elu alpha=1, Softmax axis=1, Identity for linear), float32 or float64, with
a dynamic batch dimension; dropout is left out (inference). Import reads a chain of Gemm, or
MatMul and Add, each followed by at most one of those activations, with Flatten of a 2-D input,
Identity and Dropout as no-ops: the multilayer perceptrons torch.onnx.export writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..nn.layers import FullyConnected
from ..nn.network import Network
from . import saving

OPSET = 13
EXPORTED = {"sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}), "relu": ("Relu", {}),
            "leaky_relu": ("LeakyRelu", {"alpha": 0.01}), "elu": ("Elu", {"alpha": 1.0}),
            "softmax": ("Softmax", {"axis": 1}), "linear": ("Identity", {})}
ACTIVATION_OPS = {op: name for name, (op, _) in EXPORTED.items() if op != "Identity"}
NO_OPS = ("Identity", "Dropout", "Flatten")
SUPPORTED = ("Gemm", "MatMul", "Add", *ACTIVATION_OPS, *NO_OPS)


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export and import need the onnx package: pip install 'clnet[onnx]'") from exc
    return onnx


def export(net: Network, path: str | os.PathLike) -> Path:
    """Write `net` as an ONNX model to `path` (atomically; `.onnx` added to a name without a
    suffix); returns the path written."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    path = Path(path)
    path = path.with_name(path.name + ".onnx") if not path.suffix and not path.is_dir() else path
    path = saving.file_path(path)
    element = TensorProto.FLOAT if net.dtype == np.float32 else TensorProto.DOUBLE
    nodes, initializers, current = [], [], "x"
    for i, (layer, (w, b)) in enumerate(zip(net.layers, zip(*[iter(net.parameter_buffer.get())] * 2))):
        initializers += [numpy_helper.from_array(np.ascontiguousarray(w), f"W{i}"),
                         numpy_helper.from_array(np.ascontiguousarray(b), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [f"z{i}"], transB=1, name=f"layer{i}"))
        op, attributes = EXPORTED[layer.activation]
        current = "y" if i == len(net.layers) - 1 else f"a{i}"
        nodes.append(helper.make_node(op, [f"z{i}"], [current], name=f"{layer.activation}{i}", **attributes))
    graph = helper.make_graph(nodes, "clnet", [helper.make_tensor_value_info("x", element, ["batch", net.inputs])],
                              [helper.make_tensor_value_info("y", element, ["batch", net.outputs])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="clnet")
    onnx.checker.check_model(model)
    return saving.write_file_atomic(path, lambda f: f.write(model.SerializeToString()))


def read(path: str | os.PathLike) -> tuple[int, list[FullyConnected], np.dtype, list[np.ndarray]]:
    """(inputs, layers, dtype, [W0, b0, ...]) of the ONNX model at `path`; ValueError naming an
    operator or a form clnet cannot run, with what it supports."""
    onnx = _onnx()
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    inputs = [i for i in graph.input if i.name not in values]
    if len(inputs) != 1:
        raise ValueError(f"{path}: a network takes one input, the model has {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    current, layers, pending = inputs[0].name, [], None  # pending: [W (out, in), b] awaiting its activation

    def flush(activation: str) -> None:
        nonlocal pending
        w, b = pending
        layers.append((w, np.zeros(w.shape[0], w.dtype) if b is None else b.reshape(-1), activation))
        pending = None

    for node in graph.node:
        op = node.op_type
        if op == "Constant":
            continue
        if op not in SUPPORTED:
            raise ValueError(f"{path}: unsupported ONNX operator {op!r} (node {node.name!r}); clnet imports "
                             f"{', '.join(SUPPORTED)}")
        data = [name for name in node.input if name and name not in values]
        if data != [current]:
            raise ValueError(f"{path}: node {node.name!r} ({op}) does not continue the chain from {current!r}: "
                             "clnet imports a sequence of layers")
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "Flatten" and len(dims) != 2:
            raise ValueError(f"{path}: Flatten of a {len(dims)}-D input; clnet takes (batch, features) inputs")
        if op in ("Gemm", "MatMul"):
            if pending is not None:
                flush("linear")
            pending = _linear(path, op, node, attributes, values, current)
        elif op == "Add":
            if pending is None or pending[1] is not None:
                raise ValueError(f"{path}: Add node {node.name!r} is not the bias of a MatMul")
            pending[1] = values[next(name for name in node.input if name in values)]
        elif op in ACTIVATION_OPS:
            if pending is None:
                raise ValueError(f"{path}: activation {op} (node {node.name!r}) follows no Gemm or MatMul")
            _check_attributes(path, op, node, attributes)
            flush(ACTIVATION_OPS[op])
        current = node.output[0]
    if pending is not None:
        flush("linear")
    if not layers:
        raise ValueError(f"{path}: the model has no Gemm or MatMul layer")
    dtype = np.dtype(layers[0][0].dtype)
    return (layers[0][0].shape[1], [FullyConnected(w.shape[0], act) for w, _, act in layers], dtype,
            [a for w, b, _ in layers for a in (w, b)])


def _linear(path, op: str, node, attributes: dict, values: dict, current: str) -> list:
    """[W (out, in), bias or None] of a Gemm or MatMul node whose weights are constants."""
    weights = [values.get(name) for name in node.input[1:2]]
    if not weights or weights[0] is None or weights[0].ndim != 2:
        raise ValueError(f"{path}: {op} node {node.name!r} needs a constant 2-D weight matrix")
    if op == "MatMul":
        return [np.ascontiguousarray(weights[0].T), None]
    if attributes.get("transA", 0) or attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0:
        raise ValueError(f"{path}: Gemm node {node.name!r} with transA, alpha or beta other than 0, 1, 1")
    w = weights[0] if attributes.get("transB", 0) else weights[0].T
    bias = values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return [np.ascontiguousarray(w), bias]


def _check_attributes(path, op: str, node, attributes: dict) -> None:
    expected = {"LeakyRelu": ("alpha", 0.01), "Elu": ("alpha", 1.0)}.get(op)
    if expected and abs(attributes.get(*expected) - expected[1]) > 1e-6:
        raise ValueError(f"{path}: {op} node {node.name!r} has {expected[0]}={attributes[expected[0]]}; clnet's "
                         f"{ACTIVATION_OPS[op]} has {expected[0]}={expected[1]}")
    if op == "Softmax" and attributes.get("axis", -1) not in (1, -1):
        raise ValueError(f"{path}: Softmax node {node.name!r} over axis {attributes['axis']}; clnet's is over axis 1")
