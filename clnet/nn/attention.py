"""Multi-head self-attention over (batch, seq, features) samples, PyTorch's nn.MultiheadAttention
with batch_first=True and the same arrays:

    qkv = x @ in_proj_weight.T + in_proj_bias              (batch, seq, 3 * features): q, k, v
    p = softmax(q_h k_h^T / sqrt(head_size)) per head h    (batch, heads, seq, seq); causal: j <= i
    out = concat_h(dropout(p) v_h) @ out_proj_weight.T + out_proj_bias

The projections run on the GEMM; the products over positions run every sample and head in one
launch each (clnet.ops.attention). The probabilities are kept for the backward pass, so memory
grows with seq^2: `training_bytes` counts them, and a sequence too long for the device is refused
before anything is allocated.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pyopencl.array as cla

from ..ops import attention, bias, blas, dense
from ..ops import dropout as dropout_op
from ..ops.attention import Heads, Shape
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Parameter, Step
from .registry import register_layer


class MultiHeadAttention(Layer):
    """Self-attention of `heads` heads over (seq, features) samples (features divisible by heads).

    causal: position i attends to positions j <= i only (a GPT's mask); dropout: the probability
    that training drops each attention weight (PyTorch's `dropout` argument)."""

    def __init__(self, heads: int, causal: bool = False, dropout: float = 0.0):
        if isinstance(heads, bool) or not isinstance(heads, numbers.Integral) or heads < 1:
            raise ValueError(f"MultiHeadAttention needs a positive whole number of heads, got {heads!r}")
        self.heads, self.causal = int(heads), bool(causal)
        self.attention_dropout = dropout_op.check_rate(dropout)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 2:
            raise ValueError(f"MultiHeadAttention takes (batch, seq, features) inputs, got samples of shape "
                             f"{input_shape}")
        if input_shape[1] % self.heads:
            raise ValueError(f"MultiHeadAttention's {input_shape[1]} features do not divide into {self.heads} heads")
        return tuple(input_shape)

    def parameters(self, input_shape: tuple[int, ...]) -> list[Parameter]:
        features = input_shape[1]
        return [Parameter("in_proj_weight", (3 * features, features), "weight", fan_in=features, fan_out=features),
                Parameter("in_proj_bias", (3 * features,), "bias"),
                Parameter("out_proj_weight", (features, features), "weight", fan_in=features, fan_out=features),
                Parameter("out_proj_bias", (features,), "bias")]

    def build(self, ctx, input_shape, dtype, arrays) -> AttentionLayer:
        return AttentionLayer(self, ctx, input_shape, dtype, arrays)

    def training_bytes(self, batch, input_shape, itemsize, is_output) -> dict[str, int]:
        seq, features = input_shape
        rows, scores = batch * seq, batch * self.heads * seq * seq
        found = {f"q, k, v and their gradients ({rows} x {3 * features}, twice)": 2 * rows * 3 * features * itemsize,
                 f"attention probabilities and their gradients ({scores:,}, twice)": 2 * scores * itemsize,
                 f"attended values, outputs and gradients ({rows} x {features}, four)": 4 * rows * features * itemsize}
        if self.attention_dropout:
            found[f"dropped probabilities ({scores:,})"] = scores * itemsize
        return found

    def config(self) -> dict:
        return {"heads": self.heads, "causal": self.causal, "dropout": self.attention_dropout}

    def brief(self) -> str:
        return f"attention {self.heads} heads" + (" causal" if self.causal else "")

    def __repr__(self) -> str:
        rate = f", dropout={self.attention_dropout}" if self.attention_dropout else ""
        return f"MultiHeadAttention({self.heads}, causal={self.causal}{rate})"


class AttentionLayer(BuiltLayer):
    """The inference half: the projections' arrays, and a forward pass that allocates its own
    intermediates per call."""

    def shape(self, batch: int) -> Shape:
        seq, features = self.input_shape
        return Shape(batch, seq, self.spec.heads, features // self.spec.heads)

    @property
    def scale(self) -> float:
        return 1 / math.sqrt(self.input_shape[1] // self.spec.heads)

    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        batch = x.shape[0]
        shape, queue = self.shape(batch), self.ctx.queue
        rows, width = batch * shape.seq, shape.width
        qkv = cla.empty(queue, (rows, 3 * width), self.dtype)
        p = cla.empty(queue, shape.scores, self.dtype)
        attended = cla.empty(queue, (rows, width), self.dtype)
        out = self.empty(batch) if out is None else out
        self.attend(x.reshape(rows, width), qkv, p, None, attended, out.reshape(rows, width), shape)
        return out

    def attend(self, x, qkv, p, dropped, attended, out, shape: Shape, drop: tuple | None = None) -> None:
        """The forward pass on 2-D (rows, features) views: qkv, p (dropout applied into `dropped`
        with drop = (key, index, step, first)), attended, out."""
        ctx, arrays, causal, width = self.ctx, self.arrays, self.spec.causal, shape.width
        dense.forward(ctx, x, arrays["in_proj_weight"], arrays["in_proj_bias"], "linear", qkv)
        attention.dots(ctx, Heads(qkv, 0), Heads(qkv, width), p, shape, self.scale, causal)
        attention.softmax(ctx, p, p, shape, causal)
        if drop is not None:
            dropout_op.apply(ctx, p, dropped, self.spec.attention_dropout, *drop)
            p = dropped
        attention.weighted_sum(ctx, p, Heads(qkv, 2 * width), Heads(attended), shape, causal)
        dense.forward(ctx, attended, arrays["out_proj_weight"], arrays["out_proj_bias"], "linear", out)

    def training(self, link: Link) -> AttentionTraining:
        return AttentionTraining(self, link)

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        """q, k, v each a MatMul and Add, reshaped to (batch, seq, heads, head_size) and transposed
        to (batch, heads, seq, head_size) (k to (batch, heads, head_size, seq)); the scaled scores'
        MatMul, the causal mask added, Softmax, MatMul with v, transposed and reshaped back, the
        output projection."""
        seq, width = self.input_shape
        heads = self.spec.heads
        split = graph.constant([0, 0, heads, width // heads], "heads", dtype=np.int64)
        w, b = arrays["in_proj_weight"], arrays["in_proj_bias"]
        q, k, v = (graph.node("Reshape", [graph.node("Add", [graph.node("MatMul", [x, graph.constant(
            np.ascontiguousarray(w[i * width:(i + 1) * width].T), "W")]), graph.constant(
            b[i * width:(i + 1) * width], "b")]), split]) for i in range(3))
        scores = graph.node("Mul", [graph.node("MatMul", [graph.node("Transpose", [q], perm=[0, 2, 1, 3]),
                                                          graph.node("Transpose", [k], perm=[0, 2, 3, 1])]),
                                    graph.constant(self.scale, "scale")])
        if self.spec.causal:
            mask = np.where(np.triu(np.ones((seq, seq), dtype=bool), 1), -np.inf, 0.0)
            scores = graph.node("Add", [scores, graph.constant(mask, "mask")])
        attended = graph.node("MatMul", [graph.node("Softmax", [scores], axis=-1),
                                         graph.node("Transpose", [v], perm=[0, 2, 1, 3])])
        joined = graph.node("Reshape", [graph.node("Transpose", [attended], perm=[0, 2, 1, 3]),
                                        graph.constant([0, 0, width], "shape", dtype=np.int64)])
        out = graph.node("MatMul", [joined, graph.constant(np.ascontiguousarray(arrays["out_proj_weight"].T), "W")])
        return graph.node("Add", [out, graph.constant(arrays["out_proj_bias"], "b")])

    def __repr__(self) -> str:
        return f"AttentionLayer({self.spec!r} on {self.input_shape}, {self.dtype.name})"


class AttentionTraining(LayerTraining):
    """The training half for a fixed batch: q, k, v, the probabilities (and with dropout the
    dropped ones) and the attended values kept for the backward pass."""

    def __init__(self, layer: AttentionLayer, link: Link):
        super().__init__(layer, link)
        self.shape = shape = layer.shape(self.batch)
        self.replayable = not layer.spec.attention_dropout  # the masks change every step
        queue, dtype, rows, width = layer.ctx.queue, layer.dtype, self.batch * shape.seq, shape.width
        self.qkv, self.grad_qkv = (cla.empty(queue, (rows, 3 * width), dtype) for _ in range(2))
        self.p, self.grad_p = (cla.empty(queue, shape.scores, dtype) for _ in range(2))
        self.dropped = cla.empty(queue, shape.scores, dtype) if layer.spec.attention_dropout else None
        self.attended, self.grad_attended = (cla.empty(queue, (rows, width), dtype) for _ in range(2))
        self.out, self.delta = layer.empty(self.batch), layer.empty(self.batch)
        self._drop: tuple | None = None  # (key, index, step, first) of the last forward's dropout

    def forward(self, step: Step) -> None:
        layer, shape = self.layer, self.shape
        rows = self.batch * shape.seq
        per_sample = shape.heads * shape.seq * shape.seq
        self._drop = (step.key, self.index, step.number, step.row_offset * per_sample) if (
            step.train and layer.spec.attention_dropout) else None
        layer.attend(self.x.reshape(rows, shape.width), self.qkv, self.p, self.dropped, self.attended,
                     self.out.reshape(rows, shape.width), shape, self._drop)

    def backward(self) -> None:
        ctx, layer, shape = self.ctx, self.layer, self.shape
        rows, width, causal = self.batch * shape.seq, shape.width, layer.spec.causal
        delta, grads, arrays = self.delta.reshape(rows, width), self.gradients, layer.arrays
        qkv, grad_qkv = self.qkv, self.grad_qkv
        if "out_proj_weight" in grads:
            bias.bias_gradient(ctx, delta, grads["out_proj_bias"])
            blas.gemm(ctx, delta, self.attended, grads["out_proj_weight"], trans_a=True)
        blas.gemm(ctx, delta, arrays["out_proj_weight"], self.grad_attended)
        used = self.p if self._drop is None else self.dropped
        # dC/dv = p^T dC/d(attended); dC/dp = dC/d(attended) v^T, through the dropout's mask
        attention.weighted_sum(ctx, used, Heads(self.grad_attended), Heads(grad_qkv, 2 * width), shape, causal,
                               transposed=True)
        attention.dots(ctx, Heads(self.grad_attended), Heads(qkv, 2 * width), self.grad_p, shape, 1.0, causal)
        if self._drop is not None:
            dropout_op.apply(ctx, self.grad_p, self.grad_p, layer.spec.attention_dropout, *self._drop)
        attention.softmax_backward(ctx, self.p, self.grad_p, shape, layer.scale, causal)  # dC/d(q k^T)
        attention.weighted_sum(ctx, self.grad_p, Heads(qkv, width), Heads(grad_qkv, 0), shape, causal)
        attention.weighted_sum(ctx, self.grad_p, Heads(qkv, 0), Heads(grad_qkv, width), shape, causal, transposed=True)
        x = self.x.reshape(rows, width)
        if "in_proj_weight" in grads:
            bias.bias_gradient(ctx, grad_qkv, grads["in_proj_bias"])
            blas.gemm(ctx, grad_qkv, x, grads["in_proj_weight"], trans_a=True)
        if self.grad_x is not None:
            blas.gemm(ctx, grad_qkv, arrays["in_proj_weight"], self.grad_x.reshape(rows, width))

    def release(self) -> None:
        super().release()
        self.qkv = self.grad_qkv = self.p = self.grad_p = self.dropped = self.attended = self.grad_attended = None


register_layer(MultiHeadAttention)
