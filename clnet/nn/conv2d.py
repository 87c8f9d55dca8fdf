"""2-D convolution layers, PyTorch's nn.Conv2d in NCHW with the activation fused:
a = f(conv(x, W) + b), W of shape (out_channels, in_channels / groups, kh, kw).

    Conv2d(out_channels, kernel_size, stride, padding, dilation, groups, bias, activation)
    Conv2dLayer          the inference half: weights, bias, forward pass
    Conv2dTraining       the training half for one batch size, with its bounded workspace

The passes run per chunk of images whose column matrix fits clnet.ops.conv.WORKSPACE_BYTES;
with one chunk (small images or batches), the forward pass's column matrix serves the
backward pass too.
"""

from __future__ import annotations

import numbers

import numpy as np
import pyopencl.array as cla

from ..ops import activations, conv
from ..runtime import allocation
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Parameter, Step
from .registry import register_layer


def _whole(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _pair(name: str, value, low: int) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low
                                 for v in pair):
        raise ValueError(f"{name} must be a whole number >= {low} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


class Conv2d(Layer):
    """A convolution of `out_channels` filters of kernel_size (an int or (kh, kw)) over
    (channels, height, width) samples, with PyTorch's stride, padding (an int, a pair, or "same"
    for stride 1: the output as large as the input, the odd pixel of padding after), dilation
    and groups (in_channels / groups input channels per filter; groups = in_channels is a
    depthwise convolution), an optional bias, and an activation (clnet.ACTIVATIONS, not
    softmax) applied in the same pass."""

    def __init__(self, out_channels: int, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1, groups: int = 1,
                 bias: bool = True, activation: str | tuple[str, float] = "linear"):
        self.out_channels = _whole("out_channels", out_channels, 1)
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        self.dilation = _pair("dilation", dilation, 1)
        if padding == "same":
            if self.stride != (1, 1):
                raise ValueError("padding='same' needs stride 1 (as in PyTorch)")
            self.padding = "same"
        elif padding == "valid":
            self.padding = (0, 0)
        else:
            self.padding = _pair("padding", padding, 0)
        self.groups = _whole("groups", groups, 1)
        if self.out_channels % self.groups:
            raise ValueError(f"out_channels ({self.out_channels}) must be a multiple of groups ({self.groups})")
        self.bias = bool(bias)
        self.activation, self.alpha = activations.parse(activation)
        if self.activation in activations.ROWWISE:
            raise ValueError(f"{self.activation} is for (batch, features) outputs: use it after Flatten and a "
                             "FullyConnected")

    def _padding(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(before, total) padding of each dimension."""
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            return tuple(t // 2 for t in totals), tuple(totals)
        return self.padding, tuple(2 * p for p in self.padding)

    def geometry(self, input_shape: tuple[int, ...]) -> conv.Geometry:
        """The convolution's shapes for samples of input_shape; ValueError when it cannot take them."""
        if len(input_shape) != 3:
            raise ValueError(f"Conv2d takes (batch, channels, height, width) inputs, got samples of shape "
                             f"{input_shape}")
        channels, height, width = input_shape
        if channels % self.groups:
            raise ValueError(f"the input's {channels} channels are not a multiple of groups ({self.groups})")
        (ph, pw), (th, tw) = self._padding()
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        out_h, out_w = conv.output_size(height, kh, sh, th, dh), conv.output_size(width, kw, sw, tw, dw)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"a {kh}x{kw} kernel (dilation {self.dilation}, padding {self.padding}) does not fit "
                             f"a {height}x{width} image")
        return conv.Geometry(channels, height, width, self.out_channels, kh, kw, sh, sw, ph, pw, dh, dw,
                             self.groups, out_h, out_w)

    def output_shape(self, input_shape):
        g = self.geometry(input_shape)
        return self.out_channels, g.out_h, g.out_w

    def parameters(self, input_shape):
        g = self.geometry(input_shape)
        field = g.kh * g.kw
        found = [Parameter("weights", (self.out_channels, g.channels // self.groups, g.kh, g.kw), "weight",
                           fan_in=g.channels // self.groups * field, fan_out=self.out_channels * field)]
        return found + ([Parameter("bias", (self.out_channels,), "bias")] if self.bias else [])

    def keeps_z(self, is_output: bool) -> bool:
        return is_output or activations.reads(self.activation) == "z"

    def training_bytes(self, batch, input_shape, itemsize, is_output) -> dict[str, int]:
        g = self.geometry(input_shape)
        size = batch * self.out_channels * g.pixels * itemsize
        chunk = conv.chunk_size(g, batch, itemsize)
        cols, product = conv.workspace_bytes(g, chunk, itemsize)
        found = {f"outputs ({batch} x {self.out_channels} x {g.out_h} x {g.out_w})": size, "deltas": size,
                 f"column matrix ({chunk} images)": cols, f"product ({chunk} images)": product}
        if self.keeps_z(is_output):
            found["logits"] = size
        return found

    def build(self, ctx, input_shape, dtype, arrays) -> Conv2dLayer:
        return Conv2dLayer(self, ctx, input_shape, dtype, arrays)

    def config(self) -> dict:
        padding = self.padding if self.padding == "same" else list(self.padding)
        return {"out_channels": self.out_channels, "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": padding, "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias,
                "activation": activations.describe(self.activation, self.alpha)}

    def brief(self) -> str:
        return f"conv {self.out_channels} {self.kernel_size[0]}x{self.kernel_size[1]} {self.activation}"


class Conv2dLayer(BuiltLayer):
    """The inference half: weights (out_channels, in_channels / groups, kh, kw), bias."""

    def __init__(self, spec, ctx, input_shape, dtype, arrays):
        super().__init__(spec, ctx, input_shape, dtype, arrays)
        self.geometry = spec.geometry(self.input_shape)

    @property
    def columns(self) -> bool:
        """Whether a pass makes a column matrix (else padded images suffice): GEMM settings decide."""
        return conv.makes_columns(self.ctx, self.dtype, self.geometry)

    @property
    def weights(self) -> cla.Array:
        return self.arrays["weights"]

    @property
    def bias(self) -> cla.Array | None:
        return self.arrays.get("bias")

    def forward(self, x: cla.Array, out: cla.Array | None = None, z: cla.Array | None = None,
                workspace: tuple[cla.Array, cla.Array] | None = None) -> cla.Array:
        """out = f(conv(x) + b) for (batch, *input_shape) x, chunk by chunk. Queued.

        z: where to keep the pre-activation; workspace: (cols, product) flat buffers for a chunk
        (default: the context's scratch buffers, shared by every layer)."""
        out = self.empty(x.shape[0]) if out is None else out
        g, batch = self.geometry, x.shape[0]
        cols, product = workspace or self._scratch(batch)
        chunk = self.chunk(batch, cols, product)
        for first in range(0, batch, chunk):
            last = min(batch, first + chunk)
            conv.forward(self.ctx, x[first:last], self.weights, self.bias, out[first:last], self.activation,
                         self.alpha, None if z is None else z[first:last], cols, product, g)
        return out

    def chunk(self, batch: int, cols: cla.Array, product: cla.Array) -> int:
        """Images per chunk for a workspace of these buffers: the most whose workspace fits (one
        image's, padded to a whole tile of columns, said 1 for every small image)."""
        have = (cols.size * self.dtype.itemsize, product.size * self.dtype.itemsize)
        low, high = 1, batch  # workspace_bytes grows with the images: bisect
        while low < high:
            middle = (low + high + 1) // 2
            if all(need <= room for need, room in zip(conv.workspace_bytes(self.geometry, middle,
                                                                           self.dtype.itemsize, self.columns), have)):
                low = middle
            else:
                high = middle - 1
        return low

    def _scratch(self, batch: int) -> tuple[cla.Array, cla.Array]:
        g, item = self.geometry, self.dtype.itemsize
        chunk = conv.chunk_size(g, batch, item, columns=self.columns)
        cols_bytes, product_bytes = conv.workspace_bytes(g, chunk, item, self.columns)
        purpose, advice = f"a convolution's workspace ({chunk} images)", "use a smaller conv.WORKSPACE_BYTES"
        cols, product = allocation.guarded(self.ctx, purpose, advice, lambda: (
            self.ctx.scratch("conv.cols", cols_bytes), self.ctx.scratch("conv.product", product_bytes)))
        return (cla.Array(self.ctx.queue, cols_bytes // item, self.dtype, data=cols),
                cla.Array(self.ctx.queue, product_bytes // item, self.dtype, data=product))

    def training(self, link: Link) -> Conv2dTraining:
        return Conv2dTraining(self, link)

    def onnx_window(self) -> dict:
        """The Conv node's window attributes."""
        g = self.geometry
        (ph, pw), (th, tw) = self.spec._padding()
        return {"kernel_shape": [g.kh, g.kw], "strides": [g.sh, g.sw], "dilations": [g.dh, g.dw],
                "pads": [ph, pw, th - ph, tw - pw]}

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        inputs = [x, graph.constant(arrays["weights"], "W")] + ([graph.constant(arrays["bias"], "b")]
                                                                   if "bias" in arrays else [])
        z = graph.node("Conv", inputs, group=self.geometry.groups, **self.onnx_window())
        return graph.activation(self.activation, self.alpha, z)


class Conv2dTraining(LayerTraining):
    """The training half for a fixed batch: out = f(z) (z kept at the output and for derivatives
    that read it), delta = dC/d(out), and a workspace of one chunk's column matrix and product
    (and the flipped filters of the input gradient's convolution)."""

    replayable = True

    def __init__(self, layer: Conv2dLayer, link: Link):
        super().__init__(layer, link)
        g, queue, dtype = layer.geometry, layer.ctx.queue, layer.dtype
        self.out = layer.empty(self.batch)
        self.z = layer.empty(self.batch) if layer.spec.keeps_z(self.is_output) else None
        self.delta = layer.empty(self.batch)
        self.flipped = cla.empty(queue, layer.weights.size, dtype) if g.transposed() is not None else None
        self._workspace()

    def _workspace(self) -> None:
        """One chunk's column matrix (or padded images) and product, for the GEMM settings now."""
        layer, g, dtype = self.layer, self.layer.geometry, self.layer.dtype
        self.columns = layer.columns
        self.chunk = conv.chunk_size(g, self.batch, dtype.itemsize, columns=self.columns)
        cols_bytes, product_bytes = conv.workspace_bytes(g, self.chunk, dtype.itemsize, self.columns)
        self.cols = cla.empty(layer.ctx.queue, cols_bytes // dtype.itemsize, dtype)
        self.product = cla.empty(layer.ctx.queue, product_bytes // dtype.itemsize, dtype)  # and dz, backward
        # the forward pass in one chunk: its column matrix (or padded images) still there for the backward pass
        self.columns_kept = layer.chunk(self.batch, self.cols, self.product) == self.batch == self.chunk and \
            conv.keeps_columns(layer.ctx, dtype, g, self.chunk)

    @property
    def logits(self) -> cla.Array:
        return self.out if self.z is None else self.z

    def views(self, a: cla.Array | None) -> cla.Array | None:
        """An array of this layer's passes as the convolution's kernels take it (Conv1d: with a
        height of 1)."""
        return a

    def forward(self, step: Step) -> None:
        if self.layer.columns != self.columns:  # GEMM settings changed since (clnet tune): a new workspace
            self._workspace()
        self.layer.forward(self.x, self.out, self.z, (self.cols, self.product))

    def backward(self, skip_activation_derivative: bool = False) -> None:
        layer, ctx, view = self.layer, self.ctx, self.views
        activation = None if skip_activation_derivative or layer.activation == "linear" else layer.activation
        saved = view(self.z if activation is not None and activations.reads(activation) == "z" else self.out)
        x, grad_x, all_delta = view(self.x), view(self.grad_x), view(self.delta)
        for first in range(0, self.batch, self.chunk):
            last = min(self.batch, first + self.chunk)
            delta = all_delta[first:last]
            if activation is not None:  # delta becomes dC/dz, in place
                activations.backward(ctx, activation, saved[first:last], delta, layer.alpha)
            conv.backward(ctx, x[first:last], delta, layer.weights, view(self.gradients.get("weights")),
                          self.gradients.get("bias"), None if grad_x is None else grad_x[first:last],
                          self.flipped, self.cols, self.product, layer.geometry, accumulate=first > 0,
                          columns_kept=self.columns_kept)

    def release(self) -> None:
        super().release()
        self.z = self.cols = self.product = self.flipped = None


register_layer(Conv2d)
