"""An ONNX graph read as clnet sees it (clnet.train.onnx_import turns the result into layers):

- the nodes as plain objects (op, data inputs, output, attributes), constants folded apart;
- shape computations (Shape, Gather, Unsqueeze, Concat... of shapes: what the dynamo exporter
  writes before a Reshape) dropped, the Reshape keeping its data input alone;
- elementwise regions of one input that compute one of clnet's activations (x * Sigmoid(x) is
  silu, x * HardSigmoid(x) hardswish, the Div/Erf form of GELU, the tanh form) replaced by one
  node of that activation, recognised by their values on sample points;
- DenseNet's concatenations of a growing list written as a concatenation of the previous one;
- the whole nested as branches: walking back from the output, a node with several data inputs
  (Add, Mul, Concat) is a block whose branches start where all its inputs' paths meet (their
  nearest common dominator), so any DAG that nests as blocks reads, in any order of nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .onnx_activations import ELEMENTWISE, RECOGNISED

MERGE_OPS = ("Add", "Mul", "Concat")
SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity", "Reshape", "Mul",
             "Div", "Add", "Sub", "ConstantOfShape", "Range", "ReduceProd")


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]  # every input, constants included ("" for an omitted optional one)
    output: str
    attributes: dict = field(default_factory=dict)


@dataclass
class Merge:
    """A node with several data inputs, and the branch (a list of items) from `fork` to each."""

    node: Node
    fork: str
    branches: list[list]


SAMPLES = np.linspace(-7, 7, 57)  # where a region's values are compared with each activation's


class Graph:
    """The nodes of a model between its one data input and its output, simplified as above."""

    def __init__(self, nodes: list[Node], values: dict, source: str, sink: str):
        self.values, self.source, self.sink = values, source, sink
        self.nodes = self._without_shape_computations(nodes)
        self.nodes = self._concatenations_nested(self._activations_recognised(self.nodes))
        self._index()

    def _index(self) -> None:
        self.made_by = {node.output: node for node in self.nodes}
        self.used_by: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in set(self.data(node)):
                self.used_by.setdefault(name, []).append(node)

    def data(self, node: Node) -> list[str]:
        """A node's inputs that are not constants."""
        return [name for name in node.inputs if name and name not in self.values]

    def _without_shape_computations(self, nodes: list[Node]) -> list[Node]:
        """Drop what computes shapes (from Shape nodes and constants); a Reshape by a computed shape
        keeps its data input only."""
        shapes, kept = set(), []
        for node in nodes:
            data = [name for name in node.inputs if name and name not in self.values]
            if node.op == "Shape" or (data and node.op in SHAPE_OPS and all(n in shapes for n in data)):
                shapes.add(node.output)
                continue
            if node.op == "Reshape" and len(node.inputs) > 1 and node.inputs[1] in shapes:
                node = Node(node.op, node.name, node.inputs[:1], node.output, {**node.attributes, "computed": True})
            kept.append(node)
        return kept

    def _activations_recognised(self, nodes: list[Node]) -> list[Node]:
        """Replace each elementwise region of one data input that computes a RECOGNISED activation by
        one node of it, the last node of the region first (so that the widest region wins)."""
        made_by = {node.output: node for node in nodes}
        self._order = {id(node): i for i, node in enumerate(nodes)}
        uses: dict[str, int] = {}
        for node in nodes:
            for name in node.inputs:
                uses[name] = uses.get(name, 0) + 1
        absorbed: dict[int, Node] = {}  # id of a replaced node -> its replacement (or None: dropped)
        for node in reversed(nodes):
            if node.op != "Mul" or id(node) in absorbed:
                continue
            region, leaves = self._region(node, made_by, uses)
            if len(region) < 2 or len(leaves) != 1 or any(uses.get(n.output, 0) > 1 for n in region if n is not node):
                continue
            name = self._which(region, next(iter(leaves)))
            if name is not None:
                for member in region:
                    absorbed[id(member)] = None
                absorbed[id(node)] = Node(name, node.name, [next(iter(leaves))], node.output, {"recognised": True})
        return [absorbed.get(id(n), n) for n in nodes if absorbed.get(id(n), n) is not None]

    def _region(self, last: Node, made_by: dict, uses: dict) -> tuple[list[Node], set[str]]:
        """The elementwise nodes `last` is computed from (up to non-elementwise producers, or a
        tensor read more than once: the activation's input, such as a bias Add's output), and the
        data tensors they start from."""
        region, leaves, wanted = [], set(), [last.output]
        while wanted:
            node = made_by.get(wanted.pop())
            if node is None or node in region:
                continue
            region.append(node)
            for name in node.inputs:
                if not name or name in self.values:
                    continue
                producer = made_by.get(name)
                if producer is not None and producer.op in ELEMENTWISE and name != self.source and uses.get(name) == 1:
                    wanted.append(name)
                else:
                    leaves.add(name)
        return region, leaves

    def _which(self, region: list[Node], x: str) -> str | None:
        """The activation (onnx_activations.RECOGNISED) the region computes of x, or None."""
        found = {x: SAMPLES}
        try:
            for node in sorted(region, key=lambda n: self._order[id(n)]):
                args = [found[n] if n in found else np.asarray(self.values[n], np.float64) for n in node.inputs if n]
                found[node.output] = ELEMENTWISE[node.op](*args, **node.attributes)
        except (KeyError, ValueError, TypeError, FloatingPointError):
            return None
        values = found[region[0].output]
        for name, form in RECOGNISED.items():
            if values.shape == SAMPLES.shape and np.allclose(values, form(SAMPLES), rtol=1e-4, atol=1e-5):
                return name
        return None

    def _concatenations_nested(self, nodes: list[Node]) -> list[Node]:
        """Concat(x0, .., xk) where Concat(x0, .., xj) exists becomes Concat(that, x(j+1), .., xk)
        (DenseNet concatenates all earlier outputs at each layer); a Concat of one is its input."""
        by_inputs: dict[tuple, str] = {}
        renamed: dict[str, str] = {}
        found = []
        for node in nodes:
            node.inputs = [renamed.get(n, n) for n in node.inputs]
            if node.op == "Concat":
                data = tuple(n for n in node.inputs if n)
                if len(data) == 1:
                    renamed[node.output] = data[0]
                    continue
                for j in range(len(data) - 1, 1, -1):
                    earlier = by_inputs.get((node.attributes.get("axis"), data[:j]))
                    if earlier is not None:
                        node.inputs = [earlier, *data[j:]]
                        break
                by_inputs[(node.attributes.get("axis"), data)] = node.output
            found.append(node)
        if self.sink in renamed:
            self.sink = renamed[self.sink]
        return found

    def dominators(self) -> dict[str, tuple[str | None, int]]:
        """Each data tensor's immediate dominator from the source, with its depth in that tree."""
        tree: dict[str, tuple[str | None, int]] = {self.source: (None, 0)}
        for node in self.nodes:
            data = [n for n in self.data(node) if n in tree]
            if data:
                top = data[0]
                for other in data[1:]:
                    top = self.meet(tree, top, other)
                tree[node.output] = (top, tree[top][1] + 1)
        return tree

    @staticmethod
    def meet(tree: dict, a: str, b: str) -> str:
        """The nearest common dominator of two tensors."""
        while a != b:
            if tree[a][1] >= tree[b][1]:
                a = tree[a][0]
            else:
                b = tree[b][0]
        return a

    def nest(self, fail) -> list:
        """The model as items in order: Nodes of one data input and Merges; fail(node, what)
        makes the error for a node that does not fit."""
        self.tree, self.taken = self.dominators(), set()
        if self.sink not in self.tree:
            raise fail(None, f"the output {self.sink!r} does not depend on the input {self.source!r}")
        return self._chain(self.source, self.sink, fail)

    def _chain(self, source: str, tensor: str, fail) -> list:
        items = []
        while tensor != source:
            node = self.made_by[tensor]
            if id(node) in self.taken:
                raise fail(node, "its output is used by two branches that do not meet at a merge: clnet's blocks "
                                 "nest (a residual, a concatenation or a product of branches from one input)")
            self.taken.add(id(node))
            data = self.data(node)
            if len(data) > 1:
                fork = data[0]
                for other in data[1:]:
                    fork = self.meet(self.tree, fork, other)
                items.append(Merge(node, fork, [self._chain(fork, name, fail) for name in data]))
                tensor = fork
            elif len(data) == 1:
                items.append(node)
                tensor = data[0]
            else:
                raise fail(node, "it reads no data input")
        return items[::-1]
