"""Each activation's ONNX form: the one table that export (onnx_export.Graph.activation), import
(onnx_import, onnx_layers) and the recognition of activations written as several nodes
(onnx_graph) read. An activation of clnet.ACTIVATIONS without an entry here is an error of the
tests (tests/test_onnx.py checks the table against them).

Each Form: `write(graph, x, alpha)`, the nodes that compute it from tensor x (opset 13: no
HardSwish, no Gelu); `ops`, the single ONNX operators that import as it, and `read(reader, node,
attributes)`, the activation (a name or (name, alpha)) that such a node means, after checking its
attributes; `values`, what it computes as a numpy function, when exporters write it as several
elementwise nodes that are recognised by their values on sample points.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..ops import activations

HARD_SIGMOID = {"alpha": 1 / 6, "beta": 0.5}  # PyTorch's hardsigmoid, relu6(x + 3) / 6


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(x / 2))


_erf = np.vectorize(math.erf)


def _named(name: str) -> Callable:
    return lambda reader, node, attributes: name


def _plain(op: str) -> Callable:
    return lambda graph, x, alpha: graph.node(op, [x])


def _with_alpha(op: str, name: str) -> Callable:
    return lambda graph, x, alpha: graph.node(op, [x], alpha=float(activations.parse((name, alpha))[1]))


def _read_alpha(name: str) -> Callable:
    def read(reader, node, attributes):
        # ONNX keeps alpha in float32: its shortest decimal is what the exporter was given (0.01)
        alpha = float(str(np.float32(attributes.get("alpha", activations.DEFAULT_ALPHA[name]))))
        try:
            return activations.parse((name, alpha))
        except ValueError as exc:
            raise reader.fail(node, str(exc)) from exc
    return read


def _rowwise(op: str, name: str) -> tuple[Callable, Callable]:
    def read(reader, node, attributes):
        if attributes.get("axis", -1) not in (1, -1):
            raise reader.fail(node, f"a {op} over axis {attributes['axis']}; clnet's is over axis 1")
        return name
    return (lambda graph, x, alpha: graph.node(op, [x], axis=1)), read


def _read_clip(reader, node, attributes):
    """relu6 for Clip(0, 6), relu for Clip(0) (bounds as inputs from opset 11, attributes before)."""
    bounds = []
    for i, (name, unbounded) in enumerate((("min", -np.inf), ("max", np.inf)), start=1):
        given = node.inputs[i] if len(node.inputs) > i and node.inputs[i] else None
        bounds.append(float(np.ravel(reader.values[given])[0]) if given else float(attributes.get(name, unbounded)))
    if bounds == [0.0, 6.0]:
        return "relu6"
    if bounds == [0.0, np.inf]:
        return "relu"
    raise reader.fail(node, f"Clip({bounds[0]}, {bounds[1]}); clnet imports Clip(0, 6) as relu6 and Clip(0) as relu")


def _read_hard_sigmoid(reader, node, attributes):
    alpha, beta = attributes.get("alpha", 0.2), attributes.get("beta", 0.5)
    if abs(alpha - HARD_SIGMOID["alpha"]) > 1e-7 or beta != HARD_SIGMOID["beta"]:  # alpha kept in float32
        raise reader.fail(node, f"HardSigmoid(alpha={alpha:.7g}, beta={beta:.7g}); clnet's hardsigmoid is PyTorch's, "
                                "alpha 1/6 and beta 1/2")
    return "hardsigmoid"


def _read_gelu(reader, node, attributes):  # opset 20's Gelu
    return "gelu_tanh" if attributes.get("approximate", b"none") in (b"tanh", "tanh") else "gelu"


def _write_gelu(graph, x, alpha):  # x * 0.5 * (1 + erf(x / sqrt(2)))
    erf = graph.node("Erf", [graph.node("Div", [x, graph.constant(math.sqrt(2))])])
    return graph.node("Mul", [x, graph.node("Mul", [graph.node("Add", [erf, graph.constant(1.0)]),
                                                    graph.constant(0.5)])])


def _write_gelu_tanh(graph, x, alpha):  # x * 0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))
    cube = graph.node("Mul", [x, graph.node("Mul", [x, x])])
    inner = graph.node("Add", [x, graph.node("Mul", [cube, graph.constant(0.044715)])])
    tanh = graph.node("Tanh", [graph.node("Mul", [inner, graph.constant(math.sqrt(2 / math.pi))])])
    return graph.node("Mul", [x, graph.node("Mul", [graph.node("Add", [tanh, graph.constant(1.0)]),
                                                    graph.constant(0.5)])])


@dataclass(frozen=True)
class Form:
    write: Callable
    ops: tuple[str, ...] = ()
    read: Callable | None = None
    values: Callable | None = None


_softmax = _rowwise("Softmax", "softmax")
_log_softmax = _rowwise("LogSoftmax", "log_softmax")
FORMS: dict[str, Form] = {
    "linear": Form(_plain("Identity")),  # Identity imports as nothing (onnx_import's NO_OPS)
    "sigmoid": Form(_plain("Sigmoid"), ("Sigmoid",), _named("sigmoid")),
    "tanh": Form(_plain("Tanh"), ("Tanh",), _named("tanh")),
    "relu": Form(_plain("Relu"), ("Relu",), _named("relu")),
    "relu6": Form(lambda graph, x, alpha: graph.node("Clip", [x, graph.constant(0.0, "min"),
                                                              graph.constant(6.0, "max")]),
                  ("Clip",), _read_clip),  # Clip(0) reads as relu
    "leaky_relu": Form(_with_alpha("LeakyRelu", "leaky_relu"), ("LeakyRelu",), _read_alpha("leaky_relu")),
    "elu": Form(_with_alpha("Elu", "elu"), ("Elu",), _read_alpha("elu")),
    "gelu": Form(_write_gelu, ("Gelu",), _read_gelu, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2)))),
    "gelu_tanh": Form(_write_gelu_tanh, values=lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi)
                                                                                  * (x + 0.044715 * x ** 3)))),
    "silu": Form(lambda graph, x, alpha: graph.node("Mul", [x, graph.node("Sigmoid", [x])]),
                 values=lambda x: x * _sigmoid(x)),
    "hardsigmoid": Form(lambda graph, x, alpha: graph.node("HardSigmoid", [x], **HARD_SIGMOID), ("HardSigmoid",),
                        _read_hard_sigmoid),
    "hardswish": Form(lambda graph, x, alpha: graph.node("Mul", [x, graph.node("HardSigmoid", [x], **HARD_SIGMOID)]),
                      ("HardSwish",), _named("hardswish"), lambda x: x * np.clip(x + 3, 0, 6) / 6),
    "softmax": Form(_softmax[0], ("Softmax",), _softmax[1]),
    "log_softmax": Form(_log_softmax[0], ("LogSoftmax",), _log_softmax[1]),
}
OPS: dict[str, Form] = {op: form for form in FORMS.values() for op in form.ops}  # what imports as an activation
RECOGNISED: dict[str, Callable] = {name: form.values for name, form in FORMS.items() if form.values is not None}


def write(graph, name: str, alpha: float | None, x: str) -> str:
    """The nodes of activation `name` from x in `graph`; their output's name."""
    form = FORMS.get(name)
    if form is None:
        raise ValueError(f"no ONNX export for the activation {name!r}")
    return form.write(graph, x, alpha)


def read(reader, op: str, node, attributes: dict):
    """The activation (a name, or (name, alpha)) of an ONNX node `op` of OPS."""
    return OPS[op].read(reader, node, attributes)


def _hard_sigmoid(x, alpha: float = 0.2, beta: float = 0.5):
    return np.clip(alpha * x + beta, 0, 1)


# the elementwise operators a recognised region may hold, as numpy computes them
ELEMENTWISE = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide, "Pow": np.power,
               "Neg": np.negative, "Sqrt": np.sqrt, "Erf": _erf, "Tanh": np.tanh, "Sigmoid": _sigmoid,
               "HardSigmoid": _hard_sigmoid}
