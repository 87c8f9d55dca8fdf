"""ONNX import (the `onnx` package: clnet[onnx]): what torch.onnx.export (both exporters),
scikit-learn's converters (skl2onnx) and other exporters write for multilayer perceptrons, CNNs
and the classifiers of torchvision, as clnet layers. The graph is read as nested branches first
(clnet.train.onnx_graph: shape computations dropped, activations written as several nodes
recognised, merges found); each chain of nodes then becomes layers:

    Gemm, MatMul (+ Add)        FullyConnected      Conv              Conv2d
    an activation after either  fused into it       any other         Activation
      (Clip(0, 6) is relu6, Clip(0) relu; LogSoftmax log_softmax; HardSigmoid(1/6, 1/2)
      hardsigmoid; HardSwish, x * Sigmoid(x), x * HardSigmoid(x), GELU's Erf and tanh forms)
    MaxPool, AveragePool        MaxPool2d, AvgPool2d (ceil_mode too; no dilation)
    Resize by whole scales (nearest, floor; linear, half-pixel)        Upsample2d
    GlobalAveragePool, ReduceMean over (H, W) keeping them             GlobalAvgPool2d
    BatchNormalization (inference), an activation after it fused       BatchNorm
    Flatten (axis 1), Reshape to (batch, features)                     Flatten
    Add, Mul, Concat (axis 1) of branches from one tensor              Residual / Add, Multiply, Concat
    Gather of a constant table by the input ids                        Embedding
    Add of a constant of a sequence's shape                            PositionalEmbedding
    LayerNormalization, or its primitive nodes (onnx_layer_norm)       LayerNorm
    ReduceMean over the positions of a sequence                        SequenceMean
    an attention region (clnet.train.onnx_attention, by its values)    MultiHeadAttention
    Identity, Dropout, Constant, Cast to a float type                  nothing
    Transpose, Cast or Identity of a constant                          folded into it (onnx_constants)
    a classifier head after the probabilities (ArgMax, ZipMap,         left out, with a logged note:
      ArrayFeatureExtractor; scikit-learn's [1 - p, p] of a sigmoid)   predict gives class indices

Anything else raises one ValueError naming every unsupported operator and its nodes; an attribute
clnet's layers do not have (asymmetric padding other than "same", dilated pooling) names the
operator, the attribute and the node.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from ..nn.activation import Activation
from ..nn.attention import MultiHeadAttention
from ..nn.blocks import Add, Concat, Multiply, Residual
from ..nn.embedding import PositionalEmbedding
from ..nn.flatten import Flatten
from ..nn.fully_connected import FullyConnected
from ..nn.pooling import GlobalAvgPool2d
from ..nn.sequence_mean import SequenceMean
from . import onnx_activations, onnx_attention, onnx_constants, onnx_layer_norm, onnx_layers
from .onnx_export import onnx_package
from .onnx_graph import MERGE_OPS, Graph, Merge, Node

log = logging.getLogger("clnet")

NO_OPS = ("Identity", "Dropout", "Cast")  # Cast: to a float type only (`Reader.read`)
LAYER_OPS = ("Gemm", "MatMul", "Add", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
             "BatchNormalization", "Flatten", "Reshape", "Resize")
SEQUENCE_OPS = ("Gather", "LayerNormalization", onnx_attention.ATTENTION)
SUPPORTED = (*LAYER_OPS, *SEQUENCE_OPS, *onnx_activations.OPS, *MERGE_OPS, *NO_OPS)
HEAD_OPS = ("ArgMax", "ZipMap")  # what classifier heads read the probabilities with


def read(path: str | os.PathLike) -> tuple[tuple[int, ...], list, np.dtype, dict[str, np.ndarray]]:
    """(sample shape, layers, dtype, arrays by name) of the ONNX model at `path`; ValueError
    naming the operators or forms clnet cannot run, with what it supports."""
    onnx = onnx_package()
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 (protobuf's DecodeError and whatever a damaged file gives)
        raise ValueError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    try:
        return _read(onnx, path, model)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:  # what a check below does not foresee
        raise ValueError(f"{path}: a malformed ONNX model ({type(exc).__name__}: {exc})") from exc


def _read(onnx, path, model) -> tuple[tuple[int, ...], list, np.dtype, dict[str, np.ndarray]]:
    from onnx import helper

    graph = model.graph
    values = onnx_constants.constants(path, onnx, graph)
    inputs = [i for i in graph.input if i.name not in values]
    if len(inputs) != 1:
        raise ValueError(f"{path}: a network takes one input, the model has {[i.name for i in inputs]}")
    tensor_type = inputs[0].type.tensor_type
    dims = [d.dim_value for d in tensor_type.shape.dim][1:]
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
    kept = _without_head(path, graph.node, values)
    seq = dims[0] if dims and dims[0] > 0 else None  # (batch, seq) ids or (batch, seq, features)
    batch = tensor_type.shape.dim[0].dim_value if tensor_type.shape.dim else 0
    replaced = _attention_replaced(kept, values, inputs[0].name, seq, opset, batch or 1)
    nodes = [replaced.get(id(n)) or Node(n.op_type, n.name, list(n.input), n.output[0],
                                         {a.name: helper.get_attribute_value(a) for a in n.attribute})
             for n in kept if n.output[0] not in values and replaced.get(id(n), True) is not None]
    sink = graph.output[0].name if len(graph.output) == 1 else None
    if nodes and (sink is None or sink not in {n.output for n in nodes}):
        sink = nodes[-1].output  # what a cut-off head read
    reader = Reader(path, values, inputs[0].name, dims, opset)
    if not nodes:
        raise ValueError(f"{path}: the model computes nothing from its input {inputs[0].name!r}")
    found = Graph(onnx_layer_norm.recognised(nodes, values), values, inputs[0].name, sink)
    reader.check_supported(found.nodes)
    for item in found.nest(reader.fail):
        reader.take(item)
    return reader.finish(np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)))


def _attention_replaced(nodes: list, values: dict, source: str, seq: int | None, opset: int, batch: int) -> dict:
    """id of an ONNX node -> the Node that replaces it (an attention region's last node), or None
    (a node inside the region, dropped); clnet.train.onnx_attention finds the regions."""
    replaced: dict = {}
    users: dict[str, list] = {}
    for n in nodes:
        for name in n.input:
            users.setdefault(name, []).append(id(n))
    for region, x, y, found in onnx_attention.find(nodes, values, source, seq, opset, batch):
        inside = {id(n) for n in region}
        for n in region:  # a node also read outside the region (a shape of x) stays
            if n.output[0] == y or all(u in inside for out in n.output for u in users.get(out, [])):
                replaced[id(n)] = None
        last = next(n for n in region if n.output[0] == y)
        replaced[id(last)] = Node(onnx_attention.ATTENTION, last.name, [x], y, found)
    return replaced


def _without_head(path, nodes, values: dict) -> list:
    """The nodes that compute the probabilities a classifier head (ArgMax, ZipMap) reads, in
    order: the head (labels from ArgMax, the ZipMap of dictionaries) is left out, and so is
    scikit-learn's [1 - p, p] of one sigmoid output, since clnet's predict and predict_proba do
    what they do. All the nodes where there is no head."""
    nodes = list(nodes)
    heads = [node for node in nodes if node.op_type in HEAD_OPS]
    if not heads:
        return nodes
    made_by = {out: node for node in nodes for out in node.output}
    probabilities = heads[0].input[0]
    concat = made_by.get(probabilities)
    if concat is not None and concat.op_type == "Concat" and len(concat.input) == 2:
        complement = made_by.get(concat.input[0])  # Sub(1, p) beside p
        if complement is not None and complement.op_type == "Sub" and complement.input[1] == concat.input[1] \
                and np.all(values.get(complement.input[0], 0) == 1):
            probabilities = concat.input[1]
    needed, wanted = set(), [probabilities]  # ids of the nodes the probabilities come from
    while wanted:
        node = made_by.get(wanted.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            wanted.extend(node.input)
    labels = next((values[node.input[0]].tolist() for node in nodes if node.op_type == "ArrayFeatureExtractor"
                   and node.input[0] in values), None)
    log.info("from_onnx %s: the classifier head (%s) is left out: the network outputs the probabilities "
             "(predict gives class indices 0..k-1%s)", path,
             ", ".join(sorted({node.op_type for node in nodes if id(node) not in needed})),
             f"; the model's labels, in that order: {labels}" if labels is not None else "")
    return [node for node in nodes if id(node) in needed]


class Reader:
    """Walks a chain of nodes (and merges, whose branches it reads with readers of their own),
    fusing an activation into the layer before it when that layer takes one, and collects the
    layers and their arrays."""

    def __init__(self, path, values: dict, current: str, dims: list[int], opset: int):
        self.path, self.values, self.current, self.dims, self.opset = path, values, current, list(dims), opset
        self.rank = len(dims) + 1
        self.supported = SUPPORTED if opset >= 20 else tuple(op for op in SUPPORTED if op != "Gelu")  # Gelu: opset 20
        self.layers: list = []  # (layer, {name: array})
        self.pending: tuple | None = None  # (make(activation) -> layer, arrays): a layer awaiting its activation

    def fail(self, node, what: str) -> ValueError:
        if node is None:
            return ValueError(f"{self.path}: {what}")
        return ValueError(f"{self.path}: {node.op} node {node.name!r}: {what}")

    def check_supported(self, nodes: list[Node]) -> None:
        """One error naming every operator clnet cannot import, with its nodes."""
        unsupported: dict[str, list[str]] = {}
        for node in nodes:
            if node.op not in self.supported and node.op not in onnx_activations.RECOGNISED:
                unsupported.setdefault(node.op, []).append(node.name)
        if unsupported:
            named = "; ".join(f"{op!r} (node{'s' * (len(names) > 1)} {', '.join(map(repr, names[:5]))}"
                              f"{', ...' if len(names) > 5 else ''})" for op, names in unsupported.items())
            raise ValueError(f"{self.path}: unsupported ONNX operator{'s' * (len(unsupported) > 1)} {named}; clnet "
                             f"imports {', '.join(self.supported)}")

    def flush(self, activation="linear") -> None:
        make, arrays = self.pending
        if "bias" in arrays and arrays["bias"] is None:  # a MatMul without an Add
            arrays["bias"] = np.zeros(arrays["weights"].shape[0], arrays["weights"].dtype)
        self.layers.append((make(activation), arrays))
        self.pending = None

    def add(self, layer, arrays: dict | None = None) -> None:
        if self.pending is not None:
            self.flush()
        self.layers.append((layer, arrays or {}))

    def take(self, item) -> None:
        """Read the next node of the chain, or a merge of branches."""
        if isinstance(item, Merge):
            self.merge(item)
        else:
            self.read(item)
        self.current = item.node.output if isinstance(item, Merge) else item.output

    def read(self, node: Node) -> None:
        op, attributes = node.op, node.attributes
        if op in ("Gemm", "MatMul"):
            self.add_pending(onnx_layers.linear(self, op, node, attributes))
        elif op == "Add":
            self.bias(node)
        elif op == "Conv":
            self.add_pending(onnx_layers.conv(self, node, attributes))
        elif op in ("MaxPool", "AveragePool"):
            self.add(onnx_layers.pool(self, node, attributes))
        elif op == "Resize":
            self.add(onnx_layers.resize(self, node, attributes, self.sample_shape()))
        elif op in ("GlobalAveragePool", "ReduceMean"):
            self.global_average(node, attributes)
        elif op == "BatchNormalization":  # the activation after it fused into it, as into a Conv
            self.add_pending(onnx_layers.batch_norm(self, node, attributes))
        elif op == "LayerNormalization":
            self.add(*onnx_layers.layer_norm(self, node, attributes, self.sample_shape()))
        elif op == "Gather":
            self.add(*onnx_layers.embedding(self, node, attributes))
        elif op == onnx_attention.ATTENTION:  # a region recognised by clnet.train.onnx_attention
            self.add(MultiHeadAttention(attributes["heads"], causal=attributes["causal"]), attributes["arrays"])
        elif op in ("Flatten", "Reshape"):
            self.flatten(node, attributes)
        elif op == "Identity" and self.pending is not None:  # clnet's own "linear": the layer is whole
            self.flush()
        elif op == "Cast":
            self.cast(node, attributes)
        elif op in onnx_activations.RECOGNISED:  # recognised from several nodes (clnet.train.onnx_graph)
            self.activation(op)
        elif op in ("Mul", "Concat"):
            raise self.fail(node, "a product or concatenation with a constant; clnet imports them of branches")
        elif op in onnx_activations.OPS:
            self.activation(onnx_activations.read(self, op, node, attributes))

    def merge(self, merge: Merge) -> None:
        """A block: each branch read from the fork's shape by a reader of its own."""
        if self.pending is not None:
            self.flush()
        node, shape = merge.node, self.sample_shape()
        parts = []
        for branch in merge.branches:
            reader = Reader(self.path, self.values, merge.fork, list(shape), self.opset)
            for item in branch:
                reader.take(item)
            if reader.pending is not None:
                reader.flush()
            parts.append(reader.layers)
        block, parts = self.block(node, parts, shape)
        arrays = {block.prefix(b, j) + name: array for b, part in enumerate(parts)
                  for j, (_, found) in enumerate(part) for name, array in found.items()}
        self.layers.append((block, arrays))

    def block(self, node: Node, parts: list[list], shape: tuple[int, ...]) -> tuple:
        """(the clnet block of a merge node, its branches' (layer, arrays) lists in the block's
        order): a product's full-size branch first, a sum of two's longer branch as the body."""
        if node.op == "Concat" and node.attributes.get("axis") not in (1, -len(shape)):
            raise self.fail(node, f"axis {node.attributes.get('axis')}; clnet concatenates along axis 1")
        if node.op == "Mul" and len(parts) != 2:
            raise self.fail(node, "a product of more than two branches")
        if node.op == "Mul":
            sizes = [math.prod(_shape_after([layer for layer, _ in part], shape)) for part in parts]
            parts = parts[::-1] if sizes[0] < sizes[1] else parts
        elif node.op == "Add" and len(parts) == 2 and len(parts[0]) < len(parts[1]):
            parts = parts[::-1]
        branches = [[layer for layer, _ in part] for part in parts]
        try:
            if node.op == "Concat":
                return Concat(*branches), parts
            if node.op == "Mul":
                return Multiply(*branches), parts
            return (Residual(branches[0], branches[1] or None) if len(branches) == 2 else Add(*branches)), parts
        except ValueError as exc:  # shapes that do not merge
            raise self.fail(node, str(exc)) from exc

    def add_pending(self, pending: tuple) -> None:
        if self.pending is not None:
            self.flush()
        self.pending = pending

    def bias(self, node) -> None:
        _, arrays = self.pending or (None, {})
        constant = self.values[next(name for name in node.inputs if name in self.values)]
        if ("bias" not in arrays or arrays["bias"] is not None) and self.rank == 3 and \
                np.squeeze(constant).shape == self.sample_shape():
            self.add(PositionalEmbedding(), {"weight": np.squeeze(constant).reshape(self.sample_shape())})
            return
        if "bias" not in arrays or arrays["bias"] is not None:
            raise self.fail(node, "an Add that is not the bias of a MatMul (nor a positional embedding)")
        bias = self.values[next(name for name in node.inputs if name in self.values)].reshape(-1)
        arrays["bias"] = bias

    def cast(self, node, attributes: dict) -> None:
        """A Cast to a float type does nothing: a network computes in its own dtype."""
        from onnx import helper

        to = np.dtype(helper.tensor_dtype_to_np_dtype(attributes["to"]))
        if to.kind != "f":
            raise self.fail(node, f"a cast to {to}; clnet's networks compute in float32 or float64")

    def global_average(self, node, attributes: dict) -> None:
        if node.op == "ReduceMean":
            axes = attributes.get("axes")
            if axes is None and len(node.inputs) > 1:
                axes = self.values[node.inputs[1]]
            if self.rank == 3 and [int(a) % 3 for a in np.ravel(axes)] == [1] and not attributes.get("keepdims", 1):
                self.add(SequenceMean())  # the mean over a sequence's positions
                self.rank = 2
                return
            if self.rank != 4 or sorted(int(a) % 4 for a in np.ravel(axes)) != [2, 3] or not attributes.get(
                    "keepdims", 1):
                raise self.fail(node, "clnet imports ReduceMean only as a global average pool (axes 2 and 3 of "
                                      "images, kept)")
        self.add(GlobalAvgPool2d())

    def flatten(self, node, attributes: dict) -> None:
        features = math.prod(self.sample_shape())
        if node.op == "Flatten" and attributes.get("axis", 1) != 1:
            raise self.fail(node, f"axis {attributes['axis']}; clnet flattens each sample (axis 1)")
        if node.op == "Reshape" and not attributes.get("computed"):  # a computed shape: the dynamo's flatten
            shape = [int(n) for n in np.ravel(self.values[node.inputs[1]])]
            if self.rank == 2 and len(shape) > 2 and shape[1] == features and not any(n != 1 for n in shape[2:]):
                return  # (batch, c) as (batch, c, 1, 1): a Multiply's factor, which it broadcasts itself
            if len(shape) != 2 or shape[1] not in (features, -1):
                raise self.fail(node, f"a reshape to {shape}; clnet imports only a flattening one, (batch, "
                                      f"{features})")
        if self.rank > 2:  # a flatten of (batch, features) does nothing
            self.add(Flatten())
            self.rank = 2

    def activation(self, spec) -> None:
        if self.pending is not None:
            self.flush(spec)
        else:
            self.layers.append((Activation(spec), {}))

    def sample_shape(self) -> tuple[int, ...]:
        """The shape of a sample after the layers read so far."""
        layers = [layer for layer, _ in self.layers] + ([self.pending[0]("linear")] if self.pending else [])
        return _shape_after(layers, tuple(self.dims))

    def finish(self, input_dtype: np.dtype) -> tuple[tuple[int, ...], list, np.dtype, dict[str, np.ndarray]]:
        if self.pending is not None:
            self.flush()
        if not self.layers:
            self.layers.append((Activation("linear"), {}))  # the model is its input
        weights = [arrays.get("weights", arrays.get("weight")) for _, arrays in self.layers
                   if "weights" in arrays or "weight" in arrays]
        if self.dims and all(d > 0 for d in self.dims):
            input_shape = tuple(self.dims)
        elif weights and isinstance(self.layers[0][0], FullyConnected):
            input_shape = (weights[0].shape[1],)
        else:
            raise ValueError(f"{self.path}: the input's dimensions {self.dims} are not all known")
        arrays = {f"layer_{i}.{name}": array for i, (_, found) in enumerate(self.layers)
                  for name, array in found.items()}
        dtype = np.dtype(weights[0].dtype) if weights else input_dtype
        return input_shape, [layer for layer, _ in self.layers], dtype, arrays


def _shape_after(layers: list, shape: tuple[int, ...]) -> tuple[int, ...]:
    for layer in layers:
        shape = layer.output_shape(shape)
    return shape
