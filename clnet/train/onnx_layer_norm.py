"""Layer normalization written as its primitive nodes (what clnet and torch.onnx.export write
below opset 17, which has no LayerNormalization), recognised and replaced by one
LayerNormalization node, which the importer reads as a LayerNorm:

    mean = ReduceMean(x, axes)          d = Sub(x, mean)
    var = ReduceMean(Pow(d, 2) or Mul(d, d), axes)
    y = Div(d, Sqrt(Add(var, eps)))     [Mul(y, scale)]  [Add(y, shift)]

with `axes` the last axes (negative, contiguous, ending at -1; keepdims) and eps, scale and shift
constants. Anything else is left as it was.
"""

from __future__ import annotations

import numpy as np

from .onnx_graph import Node


def _axes(node: Node, values: dict) -> tuple[int, ...] | None:
    """A keepdims ReduceMean's axes (attribute, or input from opset 18)."""
    if node.op != "ReduceMean" or node.attributes.get("keepdims", 1) != 1:
        return None
    given = node.attributes.get("axes")
    if given is None and len(node.inputs) > 1 and node.inputs[1] in values:
        given = np.ravel(values[node.inputs[1]]).tolist()
    return None if given is None else tuple(int(a) for a in given)


def _constant(node: Node, values: dict, other: str) -> np.ndarray | None:
    """The constant input of a two-input node beside `other` (None: there is none)."""
    rest = [name for name in node.inputs if name != other]
    return values[rest[0]] if len(rest) == 1 and rest[0] in values else None


def recognised(nodes: list[Node], values: dict) -> list[Node]:
    """The nodes with each primitive layer normalization replaced by a LayerNormalization node
    (its scale and shift added to `values`)."""
    made_by = {node.output: node for node in nodes}
    used_by: dict[str, list[Node]] = {}
    for node in nodes:
        for name in set(node.inputs):
            used_by.setdefault(name, []).append(node)

    def only(name: str, op: str) -> Node | None:  # the one node that reads `name`, if it is an `op`
        users = used_by.get(name, [])
        return users[0] if len(users) == 1 and users[0].op == op else None

    replaced: dict[int, Node | None] = {}
    for div in (n for n in nodes if n.op == "Div"):
        sub, sqrt = made_by.get(div.inputs[0]), made_by.get(div.inputs[1])
        mean = made_by.get(sub.inputs[1]) if sub is not None and sub.op == "Sub" else None
        axes = _axes(mean, values) if mean is not None and mean.inputs[0] == sub.inputs[0] else None
        if axes is None or sorted(axes) != list(range(-len(axes), 0)) or sqrt is None or sqrt.op != "Sqrt":
            continue
        add_eps = made_by.get(sqrt.inputs[0])
        var = next((made_by.get(n) for n in (add_eps.inputs if add_eps is not None and add_eps.op == "Add" else ())
                    if n not in values), None)
        square = made_by.get(var.inputs[0]) if var is not None and _axes(var, values) == axes else None
        squares = square is not None and (
            (square.op == "Mul" and square.inputs == [sub.output, sub.output]) or
            (square.op == "Pow" and square.inputs[0] == sub.output and
             np.array_equal(np.ravel(values.get(square.inputs[1], [0])), [2])))
        eps = _constant(add_eps, values, var.output) if squares else None
        if eps is None or eps.size != 1 or {id(u) for u in used_by[sub.output]} != {id(square), id(div)}:
            continue
        region, last, scale, shift = [mean, sub, square, var, add_eps, sqrt, div], div, None, None
        mul = only(div.output, "Mul")
        if mul is not None and _constant(mul, values, div.output) is not None:
            scale, last = _constant(mul, values, div.output), mul
            region.append(mul)
        add = only(last.output, "Add")
        if add is not None and _constant(add, values, last.output) is not None:
            shift, last = _constant(add, values, last.output), add
            region.append(add)
        shape = np.broadcast_shapes(*(a.shape for a in (scale, shift) if a is not None), (1,) * len(axes))[-len(axes):]
        names = [f"{div.name}_scale", f"{div.name}_shift"]
        values[names[0]] = np.ones(shape) if scale is None else np.broadcast_to(scale, shape).copy()
        values[names[1]] = np.zeros(shape) if shift is None else np.broadcast_to(shift, shape).copy()
        for member in region:
            replaced[id(member)] = None
        replaced[id(last)] = Node("LayerNormalization", div.name, [sub.inputs[0], *names], last.output,
                                  {"axis": -len(axes), "epsilon": float(np.ravel(eps)[0])})
    return [replaced.get(id(n), n) for n in nodes if replaced.get(id(n), n) is not None]
