"""ONNX export and import (the `onnx` package: clnet[onnx]).

Export asks each layer for its nodes (a layer's `to_onnx(graph, x, arrays)`, given the builder
below): a fully-connected layer is a Gemm (transB=1) and its activation's nodes, Flatten is
Flatten, dropout is left out (inference); float32 or float64, with a dynamic batch dimension.
Activations: Sigmoid, Tanh, Relu, LeakyRelu and Elu with their alpha, Softmax axis=1, Identity
for linear; gelu, gelu_tanh and silu as the few opset-13 nodes that compute them.

Import reads a chain of Gemm, or MatMul and Add, each followed by the activations clnet has
(fused into the layer, or layers of their own), Flatten, and Identity and Dropout as no-ops:
the multilayer perceptrons torch.onnx.export writes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..nn.activation import Activation
from ..nn.flatten import Flatten
from ..nn.fully_connected import FullyConnected
from ..nn.network import Network
from ..ops import activations
from . import saving

OPSET = 13
EXPORTED = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "leaky_relu": "LeakyRelu", "elu": "Elu",
            "softmax": "Softmax", "linear": "Identity"}  # and gelu, gelu_tanh, silu: see Graph.activation
ACTIVATION_OPS = {op: name for name, op in EXPORTED.items() if op != "Identity"}
NO_OPS = ("Identity", "Dropout")
SUPPORTED = ("Gemm", "MatMul", "Add", "Flatten", *ACTIVATION_OPS, "Gelu", *NO_OPS)


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export and import need the onnx package: pip install 'clnet[onnx]'") from exc
    return onnx


class Graph:
    """The builder a layer's `to_onnx` writes its nodes with: `node` adds a node and returns its
    output's name, `constant` adds an initializer, `activation` the nodes of an activation."""

    def __init__(self, dtype: np.dtype):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper, self.dtype = helper, numpy_helper, dtype
        self.nodes, self.initializers = [], []

    def _name(self, hint: str) -> str:
        return f"{hint}{len(self.nodes) + len(self.initializers)}"

    def node(self, op: str, inputs: list[str], **attributes) -> str:
        out = self._name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=f"{op}_{len(self.nodes)}", **attributes))
        return out

    def constant(self, array, hint: str = "c") -> str:
        name = self._name(hint)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array, dtype=self.dtype), name))
        return name

    def activation(self, name: str, alpha: float | None, x: str) -> str:
        if name in ("leaky_relu", "elu"):
            return self.node(EXPORTED[name], [x], alpha=float(activations.parse((name, alpha))[1]))
        if name == "softmax":
            return self.node("Softmax", [x], axis=1)
        if name in EXPORTED:
            return self.node(EXPORTED[name], [x])
        if name == "silu":  # x * sigmoid(x)
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        if name == "gelu":  # x * 0.5 * (1 + erf(x / sqrt(2)))
            erf = self.node("Erf", [self.node("Div", [x, self.constant(math.sqrt(2))])])
            return self.node("Mul", [x, self.node("Mul", [self.node("Add", [erf, self.constant(1.0)]),
                                                          self.constant(0.5)])])
        if name == "gelu_tanh":  # x * 0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))
            cube = self.node("Mul", [x, self.node("Mul", [x, x])])
            inner = self.node("Add", [x, self.node("Mul", [cube, self.constant(0.044715)])])
            tanh = self.node("Tanh", [self.node("Mul", [inner, self.constant(math.sqrt(2 / math.pi))])])
            return self.node("Mul", [x, self.node("Mul", [self.node("Add", [tanh, self.constant(1.0)]),
                                                          self.constant(0.5)])])
        raise ValueError(f"no ONNX export for the activation {name!r}")

    def output(self, name: str) -> None:
        """Name the graph's output "y" (the last node's output, renamed)."""
        if not self.nodes or name == "x":
            self.node("Identity", [name])
            name = self.nodes[-1].output[0]
        for node in self.nodes:
            for i, value in enumerate(node.input):
                if value == name:
                    node.input[i] = "y"
        self.nodes[-1].output[0] = "y"


def export(net: Network, path: str | os.PathLike) -> Path:
    """Write `net` as an ONNX model to `path` (atomically; `.onnx` added to a name without a
    suffix); returns the path written. ValueError for a layer without an ONNX form."""
    onnx = _onnx()
    from onnx import TensorProto, helper

    path = Path(path)
    path = path.with_name(path.name + ".onnx") if not path.suffix and not path.is_dir() else path
    path = saving.file_path(path)
    graph, current = Graph(net.dtype), "x"
    host = net.host_arrays()
    for i, layer in enumerate(net.layers):
        if not hasattr(layer, "to_onnx"):
            raise ValueError(f"layer {i} ({layer.spec!r}) has no ONNX export (its inference half has no to_onnx)")
        current = layer.to_onnx(graph, current, {name: host[f"layer_{i}.{name}"] for name in layer.arrays})
    graph.output(current)
    element = TensorProto.FLOAT if net.dtype == np.float32 else TensorProto.DOUBLE
    model_graph = helper.make_graph(
        graph.nodes, "clnet", [helper.make_tensor_value_info("x", element, ["batch", *net.input_shape])],
        [helper.make_tensor_value_info("y", element, ["batch", *net.output_shape])], graph.initializers)
    model = helper.make_model(model_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="clnet")
    onnx.checker.check_model(model)
    return saving.write_file_atomic(path, lambda f: f.write(model.SerializeToString()))


def read(path: str | os.PathLike) -> tuple[tuple[int, ...], list, np.dtype, dict[str, np.ndarray]]:
    """(sample shape, layers, dtype, arrays by name) of the ONNX model at `path`; ValueError
    naming an operator or a form clnet cannot run, with what it supports."""
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
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim][1:]
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
    reader = _Reader(path, values, inputs[0].name, rank=len(dims) + 1, opset=opset)
    for node in graph.node:
        if node.op_type != "Constant":
            reader.read(node, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute})
    return reader.finish(dims)


class _Reader:
    """Walks the chain of nodes, fusing each activation into the linear layer before it when it
    can, and collects the layers and their arrays."""

    def __init__(self, path, values: dict, current: str, rank: int, opset: int):
        self.path, self.values, self.current, self.rank = path, values, current, rank
        self.supported = SUPPORTED if opset >= 20 else tuple(op for op in SUPPORTED if op != "Gelu")  # Gelu: opset 20
        self.layers: list = []  # (layer, {name: array})
        self.pending: list | None = None  # [W (out, in), bias or None] of a linear layer without its activation

    def flush(self, activation="linear") -> None:
        w, b = self.pending
        bias = np.zeros(w.shape[0], w.dtype) if b is None else b.reshape(-1)
        self.layers.append((FullyConnected(w.shape[0], activation), {"weights": w, "bias": bias}))
        self.pending = None

    def read(self, node, attributes: dict) -> None:
        path, op = self.path, node.op_type
        if op not in self.supported:
            raise ValueError(f"{path}: unsupported ONNX operator {op!r} (node {node.name!r}); clnet imports "
                             f"{', '.join(self.supported)}")
        data = [name for name in node.input if name and name not in self.values]
        if data != [self.current]:
            raise ValueError(f"{path}: node {node.name!r} ({op}) does not continue the chain from {self.current!r}: "
                             "clnet imports a sequence of layers")
        if op in ("Gemm", "MatMul"):
            if self.pending is not None:
                self.flush()
            self.pending = _linear(path, op, node, attributes, self.values)
        elif op == "Add":
            if self.pending is None or self.pending[1] is not None:
                raise ValueError(f"{path}: Add node {node.name!r} is not the bias of a MatMul")
            self.pending[1] = self.values[next(name for name in node.input if name in self.values)]
        elif op == "Flatten":
            self._flatten(node, attributes)
        elif op not in NO_OPS:
            self._activation(_activation(path, op, node, attributes))
        self.current = node.output[0]

    def _flatten(self, node, attributes: dict) -> None:
        if attributes.get("axis", 1) != 1:
            raise ValueError(f"{self.path}: Flatten node {node.name!r} with axis {attributes['axis']}; clnet "
                             "flattens each sample (axis 1)")
        if self.pending is not None:
            self.flush()
        if self.rank > 2:  # a flatten of (batch, features) does nothing
            self.layers.append((Flatten(), {}))
            self.rank = 2

    def _activation(self, spec) -> None:
        if self.pending is not None:
            self.flush(spec)
        else:
            self.layers.append((Activation(spec), {}))

    def finish(self, dims: list[int]) -> tuple[tuple[int, ...], list, np.dtype, dict[str, np.ndarray]]:
        if self.pending is not None:
            self.flush()
        dense = [arrays["weights"] for _, arrays in self.layers if arrays]
        if not dense:
            raise ValueError(f"{self.path}: the model has no Gemm or MatMul layer")
        if all(d > 0 for d in dims) and dims:
            input_shape = tuple(dims)
        elif isinstance(self.layers[0][0], FullyConnected):
            input_shape = (dense[0].shape[1],)
        else:
            raise ValueError(f"{self.path}: the input's dimensions {dims} are not all known")
        arrays = {f"layer_{i}.{name}": array for i, (_, found) in enumerate(self.layers)
                  for name, array in found.items()}
        return input_shape, [layer for layer, _ in self.layers], np.dtype(dense[0].dtype), arrays


def _linear(path, op: str, node, attributes: dict, values: dict) -> list:
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


def _activation(path, op: str, node, attributes: dict):
    """The activation (a name, or (name, alpha)) of an activation node."""
    if op == "Softmax" and attributes.get("axis", -1) not in (1, -1):
        raise ValueError(f"{path}: Softmax node {node.name!r} over axis {attributes['axis']}; clnet's is over axis 1")
    if op == "Gelu":
        approximate = attributes.get("approximate", b"none")
        return "gelu_tanh" if approximate in (b"tanh", "tanh") else "gelu"
    name = ACTIVATION_OPS[op]
    if name in activations.DEFAULT_ALPHA:
        # ONNX keeps alpha in float32: its shortest decimal is what the exporter was given (0.01)
        alpha = float(str(np.float32(attributes.get("alpha", activations.DEFAULT_ALPHA[name]))))
        try:
            return activations.parse((name, alpha))
        except ValueError as exc:
            raise ValueError(f"{path}: {op} node {node.name!r}: {exc}") from exc
    return name
