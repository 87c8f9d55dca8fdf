"""ONNX import (the `onnx` package: clnet[onnx]): the chain of nodes that torch.onnx.export (both
exporters), scikit-learn's converters (skl2onnx) and other exporters write for multilayer
perceptrons and CNNs, as clnet layers.

    Gemm, MatMul (+ Add)        FullyConnected      Conv              Conv2d
    an activation after either  fused into it       any other         Activation
      (Clip(0, 6) is relu6, Clip(0) relu; LogSoftmax log_softmax)
    MaxPool, AveragePool        MaxPool2d, AvgPool2d (ceil_mode off, no dilation)
    GlobalAveragePool, ReduceMean over (H, W) keeping them             GlobalAvgPool2d
    BatchNormalization (inference)                                     BatchNorm
    Flatten (axis 1), Reshape to (batch, features)                     Flatten
    Identity, Dropout, Constant, Cast to a float type                  nothing
    Transpose, Cast or Identity of a constant                          folded into the constant
    a classifier head after the probabilities (ArgMax, ZipMap,         left out, with a logged note:
      ArrayFeatureExtractor; scikit-learn's [1 - p, p] of a sigmoid)   predict gives class indices

Anything else, or an attribute clnet's layers do not have (asymmetric padding other than
"same", ceil_mode, dilated pooling), raises ValueError naming the operator, the attribute and
the node.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from ..nn.activation import Activation
from ..nn.conv2d import Conv2d
from ..nn.flatten import Flatten
from ..nn.fully_connected import FullyConnected
from ..nn.normalization import BatchNorm
from ..nn.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from ..ops import activations
from .onnx_export import EXPORTED, onnx_package

log = logging.getLogger("clnet")

ACTIVATION_OPS = {op: name for name, op in EXPORTED.items() if op != "Identity"}
NO_OPS = ("Identity", "Dropout", "Cast")  # Cast: to a float type only (`Reader.read`)
LAYER_OPS = ("Gemm", "MatMul", "Add", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
             "BatchNormalization", "Flatten", "Reshape")
SUPPORTED = (*LAYER_OPS, *ACTIVATION_OPS, "Clip", "Gelu", *NO_OPS)
HEAD_OPS = ("ArgMax", "ZipMap")  # what classifier heads read the probabilities with
FOLDED = ("Identity", "Cast", "Transpose")  # of a constant: computed here


def read(path: str | os.PathLike) -> tuple[tuple[int, ...], list, np.dtype, dict[str, np.ndarray]]:
    """(sample shape, layers, dtype, arrays by name) of the ONNX model at `path`; ValueError
    naming an operator or a form clnet cannot run, with what it supports."""
    onnx = onnx_package()
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type in FOLDED and node.input[0] in values:  # a constant, renamed, cast or transposed
            values[node.output[0]] = _fold(onnx, node, values[node.input[0]])
    inputs = [i for i in graph.input if i.name not in values]
    if len(inputs) != 1:
        raise ValueError(f"{path}: a network takes one input, the model has {[i.name for i in inputs]}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim][1:]
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
    reader = Reader(path, values, inputs[0].name, dims, opset)
    for node in _without_head(path, graph.node, values):
        if node.output[0] not in values:
            reader.read(node, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute})
    return reader.finish()


def _fold(onnx, node, value: np.ndarray) -> np.ndarray:
    """The constant an Identity, Cast or Transpose node makes of the constant `value`."""
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Cast":
        return value.astype(onnx.helper.tensor_dtype_to_np_dtype(attributes["to"]))
    if node.op_type == "Transpose":
        return np.ascontiguousarray(value.transpose(attributes.get("perm")))
    return value


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
    """Walks the chain of nodes, fusing an activation into the layer before it when that layer
    takes one, and collects the layers and their arrays."""

    def __init__(self, path, values: dict, current: str, dims: list[int], opset: int):
        self.path, self.values, self.current, self.dims = path, values, current, dims
        self.rank = len(dims) + 1
        self.supported = SUPPORTED if opset >= 20 else tuple(op for op in SUPPORTED if op != "Gelu")  # Gelu: opset 20
        self.layers: list = []  # (layer, {name: array})
        self.pending: tuple | None = None  # (make(activation) -> layer, arrays): a layer awaiting its activation

    def fail(self, node, what: str) -> ValueError:
        return ValueError(f"{self.path}: {node.op_type} node {node.name!r}: {what}")

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

    def read(self, node, attributes: dict) -> None:
        op = node.op_type
        if op not in self.supported:
            raise ValueError(f"{self.path}: unsupported ONNX operator {op!r} (node {node.name!r}); clnet imports "
                             f"{', '.join(self.supported)}")
        data = [name for name in node.input if name and name not in self.values]
        if data != [self.current]:
            raise ValueError(f"{self.path}: node {node.name!r} ({op}) does not continue the chain from "
                             f"{self.current!r}: clnet imports a sequence of layers")
        if op in ("Gemm", "MatMul"):
            self.add_pending(_linear(self, op, node, attributes))
        elif op == "Add":
            self.bias(node)
        elif op == "Conv":
            self.add_pending(_conv(self, node, attributes))
        elif op in ("MaxPool", "AveragePool"):
            self.add(_pool(self, node, attributes))
        elif op in ("GlobalAveragePool", "ReduceMean"):
            self.global_average(node, attributes)
        elif op == "BatchNormalization":
            self.add(*_batch_norm(self, node, attributes))
        elif op in ("Flatten", "Reshape"):
            self.flatten(node, attributes)
        elif op == "Identity" and self.pending is not None:  # clnet's own "linear": the layer is whole
            self.flush()
        elif op == "Cast":
            self.cast(node, attributes)
        elif op == "Clip":
            self.activation(_clip(self, node, attributes))
        elif op not in NO_OPS:
            self.activation(_activation(self, op, node, attributes))
        self.current = node.output[0]

    def add_pending(self, pending: tuple) -> None:
        if self.pending is not None:
            self.flush()
        self.pending = pending

    def bias(self, node) -> None:
        _, arrays = self.pending or (None, {})
        if "bias" not in arrays or arrays["bias"] is not None:
            raise self.fail(node, "an Add that is not the bias of a MatMul")
        bias = self.values[next(name for name in node.input if name in self.values)].reshape(-1)
        arrays["bias"] = bias

    def cast(self, node, attributes: dict) -> None:
        """A Cast to a float type does nothing: a network computes in its own dtype."""
        from onnx import helper

        to = np.dtype(helper.tensor_dtype_to_np_dtype(attributes["to"]))
        if to.kind != "f":
            raise self.fail(node, f"a cast to {to}; clnet's networks compute in float32 or float64")

    def global_average(self, node, attributes: dict) -> None:
        if node.op_type == "ReduceMean":
            axes = attributes.get("axes")
            if axes is None and len(node.input) > 1:
                axes = self.values[node.input[1]]
            if self.rank != 4 or sorted(int(a) % 4 for a in np.ravel(axes)) != [2, 3] or not attributes.get(
                    "keepdims", 1):
                raise self.fail(node, "clnet imports ReduceMean only as a global average pool (axes 2 and 3 of "
                                      "images, kept)")
        self.add(GlobalAvgPool2d())

    def flatten(self, node, attributes: dict) -> None:
        features = math.prod(self.sample_shape())
        if node.op_type == "Flatten" and attributes.get("axis", 1) != 1:
            raise self.fail(node, f"axis {attributes['axis']}; clnet flattens each sample (axis 1)")
        if node.op_type == "Reshape":
            shape = [int(n) for n in np.ravel(self.values[node.input[1]])]
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
        shape = tuple(self.dims)
        for layer, _ in self.layers + ([(self.pending[0]("linear"), {})] if self.pending else []):
            shape = layer.output_shape(shape)
        return shape

    def finish(self) -> tuple[tuple[int, ...], list, np.dtype, dict[str, np.ndarray]]:
        if self.pending is not None:
            self.flush()
        weights = [arrays["weights"] for _, arrays in self.layers if "weights" in arrays]
        if not weights:
            raise ValueError(f"{self.path}: the model has no Gemm, MatMul or Conv layer")
        if self.dims and all(d > 0 for d in self.dims):
            input_shape = tuple(self.dims)
        elif isinstance(self.layers[0][0], FullyConnected):
            input_shape = (weights[0].shape[1],)
        else:
            raise ValueError(f"{self.path}: the input's dimensions {self.dims} are not all known")
        arrays = {f"layer_{i}.{name}": array for i, (_, found) in enumerate(self.layers)
                  for name, array in found.items()}
        return input_shape, [layer for layer, _ in self.layers], np.dtype(weights[0].dtype), arrays


def _linear(reader: Reader, op: str, node, attributes: dict) -> tuple:
    """A fully-connected layer awaiting its activation, from a Gemm or MatMul of constant weights."""
    weights = [reader.values.get(name) for name in node.input[1:2]]
    if not weights or weights[0] is None or weights[0].ndim != 2:
        raise reader.fail(node, "needs a constant 2-D weight matrix")
    if op == "MatMul":
        w, bias = weights[0].T, None
    else:
        if attributes.get("transA", 0) or attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0:
            raise reader.fail(node, "transA, alpha or beta other than 0, 1, 1")
        w = weights[0] if attributes.get("transB", 0) else weights[0].T
        bias = reader.values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    arrays = {"weights": np.ascontiguousarray(w), "bias": None if bias is None else bias.reshape(-1)}
    return (lambda activation: FullyConnected(w.shape[0], activation)), arrays


def _conv(reader: Reader, node, attributes: dict) -> tuple:
    """A Conv2d awaiting its activation, from a 2-D Conv of constant weights."""
    weights = reader.values.get(node.input[1])
    if weights is None or weights.ndim != 4:
        raise reader.fail(node, "clnet imports 2-D convolutions with constant (out, in, kh, kw) weights")
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise reader.fail(node, f"auto_pad {attributes['auto_pad']!r}; clnet imports explicit pads")
    kernel = tuple(attributes.get("kernel_shape", weights.shape[2:]))
    stride, dilation = tuple(attributes.get("strides", (1, 1))), tuple(attributes.get("dilations", (1, 1)))
    top, left, bottom, right = attributes.get("pads", (0, 0, 0, 0))
    if (top, left) == (bottom, right):
        padding = (top, left)
    elif stride == (1, 1) and all(b == t // 2 and a == t - t // 2 for b, a, t in (
            (top, bottom, dilation[0] * (kernel[0] - 1)), (left, right, dilation[1] * (kernel[1] - 1)))):
        padding = "same"
    else:
        raise reader.fail(node, f"asymmetric pads {[top, left, bottom, right]}; clnet's Conv2d pads both sides "
                                "alike (or as padding='same')")
    bias = reader.values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    arrays = {"weights": weights, **({} if bias is None else {"bias": bias})}
    group = int(attributes.get("group", 1))
    return (lambda activation: Conv2d(weights.shape[0], kernel, stride, padding, dilation, group, bias is not None,
                                      activation)), arrays


def _pool(reader: Reader, node, attributes: dict):
    if attributes.get("ceil_mode", 0):
        raise reader.fail(node, "ceil_mode=1; clnet's pooling rounds the output size down")
    if any(d != 1 for d in attributes.get("dilations", ())):
        raise reader.fail(node, f"dilations {list(attributes['dilations'])}; clnet's pooling has none")
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise reader.fail(node, f"auto_pad {attributes['auto_pad']!r}; clnet imports explicit pads")
    top, left, bottom, right = attributes.get("pads", (0, 0, 0, 0))
    if (top, left) != (bottom, right):
        raise reader.fail(node, f"asymmetric pads {[top, left, bottom, right]}")
    kernel, stride = tuple(attributes["kernel_shape"]), tuple(attributes.get("strides", (1, 1)))
    if node.op_type == "MaxPool":
        return MaxPool2d(kernel, stride, (top, left))
    return AvgPool2d(kernel, stride, (top, left), bool(attributes.get("count_include_pad", 0)))


def _batch_norm(reader: Reader, node, attributes: dict) -> tuple:
    if attributes.get("training_mode", 0):
        raise reader.fail(node, "training_mode=1; clnet imports inference batch normalization")
    scale, shift, mean, var = (reader.values.get(name) for name in node.input[1:5])
    if any(a is None for a in (scale, shift, mean, var)):
        raise reader.fail(node, "needs constant scale, bias, mean and variance")
    # ONNX's momentum weighs the running value, PyTorch's the batch; both kept in float32 (0.9 is 0.89999998)
    momentum = round(1 - float(str(np.float32(attributes.get("momentum", 0.9)))), 7)
    eps = float(str(np.float32(attributes.get("epsilon", 1e-5))))
    return BatchNorm(eps, momentum), {"scale": scale, "shift": shift, "running_mean": mean, "running_var": var}


def _clip(reader: Reader, node, attributes: dict) -> str:
    """relu6 for Clip(0, 6), relu for Clip(0) (bounds as inputs from opset 11, attributes before)."""
    bounds = []
    for i, (name, unbounded) in enumerate((("min", -np.inf), ("max", np.inf)), start=1):
        given = node.input[i] if len(node.input) > i and node.input[i] else None
        bounds.append(float(np.ravel(reader.values[given])[0]) if given else float(attributes.get(name, unbounded)))
    if bounds == [0.0, 6.0]:
        return "relu6"
    if bounds == [0.0, np.inf]:
        return "relu"
    raise reader.fail(node, f"Clip({bounds[0]}, {bounds[1]}); clnet imports Clip(0, 6) as relu6 and Clip(0) as relu")


def _activation(reader: Reader, op: str, node, attributes: dict):
    """The activation (a name, or (name, alpha)) of an activation node."""
    if op in ("Softmax", "LogSoftmax") and attributes.get("axis", -1) not in (1, -1):
        raise reader.fail(node, f"a {op} over axis {attributes['axis']}; clnet's is over axis 1")
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
            raise reader.fail(node, str(exc)) from exc
    return name
