"""Multi-head self-attention in an ONNX graph, however the exporter wrote it (torch.onnx.export's
two exporters write nn.MultiheadAttention as dozens of nodes: projections, shape computations,
reshapes and transposes per head, Softmax), recognised and replaced by one node that clnet's
importer reads as a MultiHeadAttention layer.

Around each Softmax: the MatMul that makes its scores (q k^T) and the one that weighs the values
with it; the region's input x is the latest data tensor all three of q, k and v come from (walked
back through reshapes and transposes that only the region reads), its output y the output
projection (and its bias, and the reshapes back to x's shape). The region's arrays are its
constant projections (one of 3 * features outputs, or three of features), and which heads and
mask it has is found by its values: the region, evaluated by onnx's reference evaluator on a
random x, must equal clnet's attention of those arrays for one count of heads, causal or not
(1e-4); a region that equals none is left as it was (its nodes then fail as unsupported).
"""

from __future__ import annotations

import numpy as np

ATTENTION = "MultiHeadAttention"  # the op of the node that replaces a recognised region
LAYOUT = ("Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Cast")
PASS = ("Identity", "Dropout", "Cast")  # what may sit between Softmax and its MatMul


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention(x: np.ndarray, arrays: dict, heads: int, causal: bool) -> np.ndarray:
    """clnet's MultiHeadAttention (PyTorch's) of x (batch, seq, features), in numpy."""
    batch, seq, width = x.shape
    size = width // heads
    qkv = x @ arrays["in_proj_weight"].T + arrays["in_proj_bias"]
    q, k, v = (qkv[..., i * width:(i + 1) * width].reshape(batch, seq, heads, size).transpose(0, 2, 1, 3)
               for i in range(3))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size)
    if causal:
        scores = np.where(np.triu(np.ones((seq, seq), bool), 1), -np.inf, scores)
    out = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(batch, seq, width)
    return out @ arrays["out_proj_weight"].T + arrays["out_proj_bias"]


class Regions:
    """The original graph's nodes, indexed to find attention regions in."""

    def __init__(self, nodes: list, values: dict, source: str, opset: int, batch: int):
        self.nodes, self.values, self.source, self.opset, self.batch = nodes, values, source, opset, batch
        self.order = {id(n): i for i, n in enumerate(nodes)}
        self.made_by = {out: n for n in nodes for out in n.output}
        self.used_by: dict[str, list] = {}
        for n in nodes:
            for name in n.input:
                self.used_by.setdefault(name, []).append(n)
        self.shapes = set()  # tensors computed from shapes and constants only
        for n in nodes:
            data = [i for i in n.input if i and i not in values]
            if n.op_type == "Shape" or all(i in self.shapes for i in data):
                self.shapes.update(n.output)

    def data(self, node) -> list[str]:
        return [i for i in node.input if i and i not in self.values and i not in self.shapes]

    def ancestors(self, tensor: str) -> set[str]:
        found, wanted = set(), [tensor]
        while wanted:
            name = wanted.pop()
            if name in found:
                continue
            found.add(name)
            node = self.made_by.get(name)
            if node is not None:
                wanted.extend(self.data(node))
        return found

    def region(self, x: str, y: str) -> list:
        """The nodes that compute y from x and constants, in order (shape computations included)."""
        found, wanted = {}, [y]
        while wanted:
            name = wanted.pop()
            node = self.made_by.get(name)
            if name == x or node is None or id(node) in found:
                continue
            found[id(node)] = node
            wanted.extend(i for i in node.input if i and i not in self.values)
        return sorted(found.values(), key=lambda n: self.order[id(n)])

    def sole_user(self, tensor: str):
        """The one node that reads `tensor` as data (shape computations aside), or None."""
        users = [u for u in self.used_by.get(tensor, []) if not all(o in self.shapes for o in u.output)]
        return users[0] if len(users) == 1 else None


def find(nodes: list, values: dict, source: str, seq: int | None, opset: int, batch: int = 1) -> list[tuple]:
    """The attention regions: (their nodes, x, y, {"heads", "causal", arrays by clnet's names});
    batch: the model's batch size where it is fixed (an exporter's reshapes may hold it)."""
    graph = Regions(nodes, values, source, opset, batch)
    found = []
    for node in nodes:
        if node.op_type == "Softmax" and seq:
            region = _region_of(graph, node, seq)
            if region is not None:
                found.append(region)
    return found


def _region_of(graph: Regions, softmax_node, seq: int):
    weigh = _following_matmul(graph, softmax_node.output[0])
    scores = _preceding_matmul(graph, softmax_node.input[0])
    if weigh is None or scores is None or len(graph.data(scores)) != 2:
        return None
    values_in = next((i for i in weigh.input if i != _passed(graph, softmax_node.output[0], weigh)), None)
    q_in, k_in = graph.data(scores)
    common = graph.ancestors(q_in) & graph.ancestors(k_in) & graph.ancestors(values_in)
    if not common:
        return None
    x = max(common, key=lambda t: graph.order[id(graph.made_by[t])] if t in graph.made_by else -1)
    ends = _ends(graph, weigh)
    if not ends:
        return None
    while True:  # back through reshapes, transposes and a joint projection that only the region reads
        producer = graph.made_by.get(x)
        if producer is None or len(graph.data(producer)) != 1 or not (producer.op_type in LAYOUT or (
                producer.op_type in ("MatMul", "Gemm", "Add") and any(i in graph.values for i in producer.input))):
            break
        inside = {id(n) for n in graph.region(x, ends[-1])}
        if not all(id(user) in inside for user in graph.used_by.get(x, [])):
            break
        x = graph.data(producer)[0]
    return _checked(graph, x, ends, scores, weigh, values_in, q_in, k_in, seq)


def _passed(graph: Regions, tensor: str, until) -> str:
    """The name under which `tensor` reaches the node `until` (through PASS nodes)."""
    while until not in graph.used_by.get(tensor, []):
        tensor = graph.used_by[tensor][0].output[0]
    return tensor


def _following_matmul(graph: Regions, tensor: str):
    for _ in range(4):
        user = graph.sole_user(tensor)
        if user is None:
            return None
        if user.op_type == "MatMul" and user.input[0] == tensor:
            return user
        if user.op_type not in PASS:
            return None
        tensor = user.output[0]
    return None


def _preceding_matmul(graph: Regions, tensor: str):
    for _ in range(6):  # the scale, the mask, casts
        node = graph.made_by.get(tensor)
        if node is None:
            return None
        if node.op_type == "MatMul":
            return node
        data = graph.data(node)
        if node.op_type not in ("Mul", "Div", "Add", "Sub", "Where", *PASS) or not data:
            return None
        tensor = data[-1] if node.op_type == "Where" else data[0]
    return None


def _ends(graph: Regions, weigh) -> list[str]:
    """The tensors after the output projection (its output, its bias's, the reshapes'): where the
    region may end."""
    tensor, ends, projected = weigh.output[0], [], False
    for _ in range(12):
        user = graph.sole_user(tensor)
        if user is None:
            break
        constant = any(i in graph.values for i in user.input[1:2])
        if not projected and user.op_type in ("MatMul", "Gemm") and constant:
            projected = True
        elif projected and user.op_type == "Add" and any(i in graph.values for i in user.input):
            pass
        elif user.op_type not in LAYOUT:
            break
        tensor = user.output[0]
        if projected:
            ends.append(tensor)
    return ends


def _projection(graph: Regions, node) -> tuple[np.ndarray, np.ndarray | None]:
    """(weights (outputs, inputs), bias or None) of a MatMul or Gemm of constant weights."""
    w = np.asarray(graph.values[node.input[1]], np.float64)
    attributes = {a.name: a for a in node.attribute}
    if node.op_type == "Gemm":
        transposed = bool(attributes["transB"].i) if "transB" in attributes else False
        bias = graph.values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return (w if transposed else w.T), bias
    user = graph.sole_user(node.output[0])
    bias = None
    if user is not None and user.op_type == "Add":
        bias = next((graph.values[i] for i in user.input if i in graph.values), None)
    return w.T, bias


def _checked(graph, x, ends, scores, weigh, values_in, q_in, k_in, seq):
    region = graph.region(x, ends[-1])
    projections = [n for n in region if n.op_type in ("MatMul", "Gemm") and n.input[1:2]
                   and n.input[1] in graph.values and np.ndim(graph.values[n.input[1]]) == 2]
    after = {id(n) for n in graph.region(weigh.output[0], ends[-1])}
    out = [n for n in projections if id(n) in after]
    into = [n for n in projections if id(n) not in after]
    if len(out) != 1 or len(into) not in (1, 3):
        return None
    out_w, out_b = _projection(graph, out[0])
    width = out_w.shape[0]
    if len(into) == 1:
        in_w, in_b = _projection(graph, into[0])
    else:
        def ancestor_of(t):
            found = graph.ancestors(t)
            return next(n for n in into if n.output[0] in found or any(o in found for o in _outputs_after(graph, n)))
        try:
            ordered = [ancestor_of(q_in), ancestor_of(k_in), ancestor_of(values_in)]
        except StopIteration:
            return None
        parts = [_projection(graph, n) for n in ordered]
        in_w = np.concatenate([w for w, _ in parts])
        in_b = np.concatenate([np.zeros(width) if b is None else np.ravel(b) for _, b in parts])
    if in_w.shape != (3 * width, width) or out_w.shape != (width, width):
        return None
    arrays = {"in_proj_weight": in_w, "in_proj_bias": np.zeros(3 * width) if in_b is None else np.ravel(in_b),
              "out_proj_weight": out_w, "out_proj_bias": np.zeros(width) if out_b is None else np.ravel(out_b)}
    sample = np.random.default_rng(0).normal(size=(graph.batch, seq, width))
    for end in reversed(ends):
        got = _evaluate(graph, x, end, sample)
        if got is None or got.shape != sample.shape:
            continue
        for heads in [h for h in range(1, width + 1) if width % h == 0]:
            for causal in (False, True):
                if np.allclose(got, attention(sample, arrays, heads, causal), rtol=1e-4, atol=1e-5):
                    dtype = np.asarray(graph.values[out[0].input[1]]).dtype
                    return (graph.region(x, end), x, end, {"heads": heads, "causal": causal, "arrays": {
                        name: a.astype(dtype) for name, a in arrays.items()}})
    return None


def _outputs_after(graph: Regions, node) -> list[str]:
    """The projection's output and its bias Add's."""
    user = graph.sole_user(node.output[0])
    return [node.output[0]] + ([user.output[0]] if user is not None and user.op_type == "Add" else [])


def _evaluate(graph: Regions, x: str, y: str, sample: np.ndarray) -> np.ndarray | None:
    """y of the region from x = sample, by onnx's reference evaluator (None when it cannot)."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    region = graph.region(x, y)
    used = {i for n in region for i in n.input if i in graph.values}
    dtype = next((np.asarray(graph.values[i]).dtype for i in sorted(used)
                  if np.asarray(graph.values[i]).dtype.kind == "f"), np.dtype(np.float32))
    element = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    constants = [numpy_helper.from_array(np.asarray(graph.values[name]), name) for name in sorted(used)]
    model = helper.make_model(helper.make_graph(
        region, "attention", [helper.make_tensor_value_info(x, element, list(sample.shape))],
        [helper.make_tensor_value_info(y, element, None)], constants),
        opset_imports=[helper.make_opsetid("", graph.opset)])
    try:
        return np.asarray(ReferenceEvaluator(model).run(None, {x: sample.astype(dtype)})[0], np.float64)
    except Exception:  # any node the evaluator cannot run: not a region clnet recognises
        return None
