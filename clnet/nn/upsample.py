"""Upsample2d: PyTorch's nn.Upsample(scale_factor, mode) over (channels, height, width) samples,
for whole scale factors, nearest or bilinear (align_corners=False, PyTorch's default); no
parameters (clnet.ops.upsample)."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

from ..ops import upsample
from .conv2d import _pair
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Step
from .registry import register_layer


class Upsample2d(Layer):
    """(channels, h, w) -> (channels, h * sh, w * sw) for scale_factor s or (sh, sw), whole
    numbers; mode "nearest" (each pixel repeated) or "bilinear" (interpolated, the borders'
    pixels repeated as PyTorch's align_corners=False does)."""

    def __init__(self, scale_factor: int | tuple[int, int] = 2, mode: str = "nearest"):
        self.scale_factor = _pair("scale_factor", scale_factor, 1)
        if mode not in upsample.MODES:
            raise ValueError(f"unknown upsampling mode {mode!r}; choose one of {', '.join(upsample.MODES)}")
        self.mode = mode

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Upsample2d takes (batch, channels, height, width) inputs, got samples of shape "
                             f"{input_shape}")
        channels, height, width = input_shape
        return channels, height * self.scale_factor[0], width * self.scale_factor[1]

    def config(self) -> dict:
        return {"scale_factor": list(self.scale_factor), "mode": self.mode}

    def build(self, ctx, input_shape, dtype, arrays) -> UpsampleLayer:
        return UpsampleLayer(self, ctx, input_shape, dtype, arrays)

    def brief(self) -> str:
        return f"upsample {self.scale_factor[0]}x{self.scale_factor[1]} {self.mode}"


class UpsampleLayer(BuiltLayer):
    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        out = self.empty(x.shape[0]) if out is None else out
        upsample.forward(self.ctx, x, out, self.spec.scale_factor, self.spec.mode)
        return out

    def training(self, link: Link) -> UpsampleTraining:
        return UpsampleTraining(self, link)

    def to_onnx(self, graph, x: str, arrays) -> str:
        """Resize (opset 13): scales (1, 1, sh, sw); nearest as PyTorch writes it (asymmetric
        coordinates, floor), bilinear as linear with half_pixel coordinates."""
        scales = graph.constant(np.array([1.0, 1.0, *self.spec.scale_factor], np.float32), "scales", np.float32)
        if self.spec.mode == "nearest":
            return graph.node("Resize", [x, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                              nearest_mode="floor")
        return graph.node("Resize", [x, "", scales], mode="linear", coordinate_transformation_mode="half_pixel")


class UpsampleTraining(LayerTraining):
    replayable = True

    def __init__(self, layer: UpsampleLayer, link: Link):
        super().__init__(layer, link)
        self.out = layer.empty(self.batch)
        self.delta = layer.empty(self.batch) if self.grad_x is not None or self.is_output else None

    def forward(self, step: Step) -> None:
        self.layer.forward(self.x, self.out)

    def backward(self) -> None:
        if self.grad_x is not None:
            upsample.backward(self.ctx, self.delta, self.grad_x, self.layer.spec.scale_factor, self.layer.spec.mode)


register_layer(Upsample2d)
