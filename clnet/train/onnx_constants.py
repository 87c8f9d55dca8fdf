"""The constants of an ONNX model, as numpy arrays by tensor name: its initializers, its Constant
nodes, and what an Identity, Cast or Transpose node makes of a constant (folded here, so that the
graph clnet.train.onnx_import reads has only the nodes that compute from the input). A node with
no output, a Constant without a value clnet reads and a Transpose whose perm is not a permutation
are ValueErrors naming the node."""

from __future__ import annotations

import numpy as np

FOLDED = ("Identity", "Cast", "Transpose")  # of a constant: computed here


def constants(path, onnx, graph) -> dict[str, np.ndarray]:
    """Every constant tensor of `graph` (the `onnx` package passed in: clnet[onnx] is optional)."""
    values = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if not node.output or not node.output[0]:
            raise ValueError(f"{path}: {node.op_type} node {node.name!r} has no output")
        if node.op_type == "Constant":
            values[node.output[0]] = _constant(path, onnx, node)
        elif node.op_type in FOLDED and node.input and node.input[0] in values:  # a constant, renamed, cast...
            values[node.output[0]] = _fold(path, onnx, node, values[node.input[0]])
    return values


def _constant(path, onnx, node) -> np.ndarray:
    """The value of a Constant node (a tensor, or ONNX's value_float(s) and value_int(s))."""
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if "value" in attributes:
        return onnx.numpy_helper.to_array(attributes["value"])
    for name, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                        ("value_ints", np.int64)):
        if name in attributes:
            return np.array(attributes[name], dtype)
    raise ValueError(f"{path}: Constant node {node.name!r} has no value clnet reads (value, value_float(s) or "
                     f"value_int(s)); it has {sorted(attributes) or 'no attributes'}")


def _fold(path, onnx, node, value: np.ndarray) -> np.ndarray:
    """The constant an Identity, Cast or Transpose node makes of the constant `value`."""
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Cast":
        return value.astype(onnx.helper.tensor_dtype_to_np_dtype(attributes["to"]))
    if node.op_type == "Transpose":
        perm = list(attributes.get("perm", range(value.ndim - 1, -1, -1)))
        if sorted(perm) != list(range(value.ndim)):
            raise ValueError(f"{path}: Transpose node {node.name!r}: perm {perm} is not a permutation of the "
                             f"{value.ndim} axes of its input")
        return np.ascontiguousarray(value.transpose(perm))
    return value
