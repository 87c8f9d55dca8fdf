"""ONNX export (the `onnx` package: clnet[onnx]); import is clnet.train.onnx_import.

Export asks each layer for its nodes (a layer's `to_onnx(graph, x, arrays)`, given the builder
below): a fully-connected layer is a Gemm (transB=1) and its activation's nodes, a convolution a
Conv and its activation's, pooling MaxPool, AveragePool or GlobalAveragePool, batch norm
BatchNormalization (inference), Flatten is Flatten, dropout is left out (inference); float32
or float64, with a dynamic batch dimension. Activations: Sigmoid, Tanh, Relu, LeakyRelu and Elu
with their alpha, Softmax and LogSoftmax axis=1, Clip(0, 6) for relu6, Identity for linear,
HardSigmoid(1/6, 1/2) for hardsigmoid; gelu, gelu_tanh, silu and hardswish as the few opset-13
nodes that compute them. Blocks write each branch's nodes and Add, Concat (axis 1) or Mul.
Sequences: an Embedding is a Gather of int64 ids, a positional embedding an Add, a fully-connected
layer MatMul and Add, LayerNorm LayerNormalization (opset 17), attention the projections' MatMul
and Add, a Reshape and Transpose per head, MatMul, Softmax (the causal mask added first).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..nn.blocks import Branches
from ..nn.network import Network
from ..nn.normalization import LayerNorm
from ..runtime import files
from . import onnx_activations, saving

OPSET = 13  # the default: onnxruntime from 1.10, TensorRT 8, OpenVINO 2022 read it
LAYER_NORM_OPSET = 17  # LayerNormalization's first
OPSETS = range(13, 22)  # the nodes written here mean the same in each of these


def onnx_package():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export and import need the onnx package: pip install 'clnet[onnx]'") from exc
    return onnx


class Graph:
    """The builder a layer's `to_onnx` writes its nodes with: `node` adds a node and returns its
    output's name, `constant` adds an initializer, `activation` the nodes of an activation."""

    def __init__(self, dtype: np.dtype, opset: int = OPSET):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper, self.dtype, self.opset = helper, numpy_helper, dtype, opset
        self.nodes, self.initializers = [], []

    def _name(self, hint: str) -> str:
        return f"{hint}{len(self.nodes) + len(self.initializers)}"

    def node(self, op: str, inputs: list[str], **attributes) -> str:
        out = self._name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=f"{op}_{len(self.nodes)}", **attributes))
        return out

    def constant(self, array, hint: str = "c", dtype=None) -> str:
        """An initializer of the network's dtype (or `dtype`: int64 for shapes); returns its name."""
        name = self._name(hint)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype or self.dtype),
                                                              name))
        return name

    def activation(self, name: str, alpha: float | None, x: str) -> str:
        """The nodes of an activation from x (clnet.train.onnx_activations' table)."""
        return onnx_activations.write(self, name, alpha, x)

    def chain(self, layers: list, x: str, arrays, where: str = "layer ") -> str:
        """The nodes of built layers one after another from x, each by its `to_onnx`; arrays(i,
        layer): layer i's arrays by name, on the host. Returns the last output's name."""
        for i, layer in enumerate(layers):
            if not hasattr(layer, "to_onnx"):
                raise ValueError(f"{where}{i} ({layer.spec!r}) has no ONNX export (its inference half has no to_onnx)")
            x = layer.to_onnx(self, x, arrays(i, layer))
        return x

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


def needed_opset(specs) -> int:
    """The opset chosen when none is asked for: 17 with a LayerNorm (its one LayerNormalization
    node; below 17 it is written as its primitive nodes), else 13."""
    found = OPSET
    for spec in specs:
        if isinstance(spec, Branches):
            found = max([found] + [needed_opset(branch) for branch in spec.branches])
        elif isinstance(spec, LayerNorm):
            found = max(found, LAYER_NORM_OPSET)
    return found


def export(net: Network, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Write `net` as an ONNX model of this opset (13 to 21; None: the oldest that holds its
    layers, 13, or 17 with a LayerNorm) to `path` (atomically; `.onnx` added to a name without a
    suffix), declaring the oldest IR version that opset allows (7 for 13, so that older runtimes
    read it); returns the path written. ValueError for a layer without an ONNX form, or one the
    opset does not have. A network of token ids takes int64 ids."""
    onnx = onnx_package()
    from onnx import TensorProto, helper

    if opset is None:
        opset = needed_opset(net.specs)
    if isinstance(opset, bool) or opset not in OPSETS:
        raise ValueError(f"opset must be one of {OPSETS.start}..{OPSETS.stop - 1}, got {opset!r}")

    path = saving.file_path(path, ".onnx")
    graph, host = Graph(net.dtype, opset), net.host_arrays()
    graph.output(graph.chain(net.layers, "x", lambda i, layer: {name: host[f"layer_{i}.{name}"]
                                                                for name in layer.arrays}))
    element = TensorProto.FLOAT if net.dtype == np.float32 else TensorProto.DOUBLE
    taken = element if net.vocabulary is None else TensorProto.INT64  # token ids
    model_graph = helper.make_graph(
        graph.nodes, "clnet", [helper.make_tensor_value_info("x", taken, ["batch", *net.input_shape])],
        [helper.make_tensor_value_info("y", element, ["batch", *net.output_shape])], graph.initializers)
    imports = [helper.make_opsetid("", opset)]
    model = helper.make_model(model_graph, opset_imports=imports, producer_name="clnet",
                              ir_version=helper.find_min_ir_version_for(imports))
    onnx.checker.check_model(model)
    return files.write_atomic(path, lambda f: f.write(model.SerializeToString()))
