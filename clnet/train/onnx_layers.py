"""One ONNX node (of a chain clnet.train.onnx_import walks) as a clnet layer: Gemm and MatMul,
Conv, the pooling nodes, BatchNormalization, and the activations; each checks the attributes
clnet's layers have, and names the node and the attribute when one is not."""

from __future__ import annotations

import numpy as np

from ..nn.conv1d import Conv1d
from ..nn.conv2d import Conv2d
from ..nn.embedding import Embedding
from ..nn.fully_connected import FullyConnected
from ..nn.normalization import BatchNorm, LayerNorm
from ..nn.pooling import AvgPool2d, MaxPool2d
from ..nn.upsample import Upsample2d


def linear(reader, op: str, node, attributes: dict) -> tuple:
    """A fully-connected layer awaiting its activation, from a Gemm or MatMul of constant weights."""
    weights = [reader.values.get(name) for name in node.inputs[1:2]]
    if not weights or weights[0] is None or weights[0].ndim != 2:
        raise reader.fail(node, "needs a constant 2-D weight matrix")
    if op == "MatMul":
        w, bias = weights[0].T, None
    else:
        if attributes.get("transA", 0) or attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0:
            raise reader.fail(node, "transA, alpha or beta other than 0, 1, 1")
        w = weights[0] if attributes.get("transB", 0) else weights[0].T
        bias = reader.values.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    arrays = {"weights": np.ascontiguousarray(w), "bias": None if bias is None else bias.reshape(-1)}
    return (lambda activation: FullyConnected(w.shape[0], activation)), arrays


def conv(reader, node, attributes: dict) -> tuple:
    """A Conv2d awaiting its activation, from a 2-D Conv of constant weights (a Conv1d from a 1-D one)."""
    weights = reader.values.get(node.inputs[1])
    if weights is None or weights.ndim not in (3, 4):
        raise reader.fail(node, "clnet imports 1-D and 2-D convolutions with constant (out, in, k) or (out, in, kh, "
                                "kw) weights")
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise reader.fail(node, f"auto_pad {attributes['auto_pad']!r}; clnet imports explicit pads")
    dims = weights.ndim - 2
    kernel = tuple(attributes.get("kernel_shape", weights.shape[2:]))
    stride, dilation = tuple(attributes.get("strides", (1,) * dims)), tuple(attributes.get("dilations", (1,) * dims))
    pads = four_pads(reader, node, attributes) if dims == 2 else tuple(attributes.get("pads", (0, 0)))
    if len(pads) != 2 * dims:
        raise reader.fail(node, f"pads {list(pads)}; a 1-D window has 2 (start, end)")
    starts, ends = pads[:dims], pads[dims:]
    totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
    if starts == ends:
        padding = starts
    elif set(stride) == {1} and all(b == t // 2 and a == t - t // 2 for b, a, t in zip(starts, ends, totals)):
        padding = "same"
    else:
        raise reader.fail(node, f"asymmetric pads {list(pads)}; clnet's Conv{dims}d pads both "
                                f"{'sides' if dims == 2 else 'ends'} alike (or as padding='same')")
    bias = reader.values.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    arrays = {"weights": weights, **({} if bias is None else {"bias": bias})}
    group = int(attributes.get("group", 1))
    if dims == 1:  # Conv1d takes whole numbers for its window
        kernel, stride, dilation = kernel[0], stride[0], dilation[0]
        padding = padding if padding == "same" else padding[0]
    layer = Conv2d if dims == 2 else Conv1d
    return (lambda activation: layer(weights.shape[0], kernel, stride, padding, dilation, group, bias is not None,
                                     activation)), arrays


def resize(reader, node, attributes: dict, shape: tuple[int, ...]) -> Upsample2d:
    """An Upsample2d from a Resize of (batch, channels, h, w) by whole scales of h and w (constant
    scales, or sizes), PyTorch's: nearest (asymmetric coordinates, floor) or linear (half_pixel)."""
    def text(name, default):
        value = attributes.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    mode, coordinates = text("mode", "nearest"), text("coordinate_transformation_mode", "half_pixel")
    given = [reader.values.get(name) if name else None for name in (node.inputs + ["", "", ""])[2:4]]
    if len(shape) != 3 or (given[0] is None and given[1] is None):
        raise reader.fail(node, "clnet imports a Resize of (batch, channels, height, width) images by constant "
                                "scales or sizes")
    scales = (np.ravel(given[0]).astype(np.float64) if given[0] is not None and np.size(given[0])
              else np.ravel(given[1]).astype(np.float64) / np.array([1, shape[0], shape[1], shape[2]]))
    whole = np.round(scales[2:])
    if scales.size != 4 or not np.allclose(scales[:2], 1) or not np.allclose(scales[2:], whole) or (whole < 1).any():
        raise reader.fail(node, f"scales {scales.tolist()}; clnet's Upsample2d scales height and width by whole "
                                "numbers")
    if mode == "nearest" and coordinates == "asymmetric" and text("nearest_mode", "round_prefer_floor") == "floor":
        return Upsample2d(tuple(int(s) for s in whole), "nearest")
    if mode == "linear" and coordinates in ("half_pixel", "pytorch_half_pixel"):
        return Upsample2d(tuple(int(s) for s in whole), "bilinear")
    raise reader.fail(node, f"mode {mode!r} with {coordinates!r} coordinates; clnet imports nearest (asymmetric, "
                            "floor) and linear (half_pixel) as PyTorch's Upsample writes them")


def four_pads(reader, node, attributes: dict) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a 2-D Conv's or pooling's pads (ONNX: the starts, then the ends)."""
    pads = tuple(attributes.get("pads", (0, 0, 0, 0)))
    if len(pads) != 4:
        raise reader.fail(node, f"pads {list(pads)}; a 2-D window has 4 (top, left, bottom, right)")
    return pads


def pool(reader, node, attributes: dict):
    if any(d != 1 for d in attributes.get("dilations", ())):
        raise reader.fail(node, f"dilations {list(attributes['dilations'])}; clnet's pooling has none")
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise reader.fail(node, f"auto_pad {attributes['auto_pad']!r}; clnet imports explicit pads")
    top, left, bottom, right = four_pads(reader, node, attributes)
    if (top, left) != (bottom, right):
        raise reader.fail(node, f"asymmetric pads {[top, left, bottom, right]}")
    if len(attributes.get("kernel_shape", ())) != 2:
        raise reader.fail(node, f"kernel_shape {attributes.get('kernel_shape')}; clnet's pooling needs the 2 sizes "
                                "of a 2-D window")
    kernel, stride = tuple(attributes["kernel_shape"]), tuple(attributes.get("strides", (1, 1)))
    ceil = bool(attributes.get("ceil_mode", 0))
    if node.op == "MaxPool":
        return MaxPool2d(kernel, stride, (top, left), ceil)
    return AvgPool2d(kernel, stride, (top, left), bool(attributes.get("count_include_pad", 0)), ceil)


def batch_norm(reader, node, attributes: dict) -> tuple:
    """(make(activation) -> BatchNorm, arrays): a layer that awaits the activation after it."""
    if attributes.get("training_mode", 0):
        raise reader.fail(node, "training_mode=1; clnet imports inference batch normalization")
    scale, shift, mean, var = (reader.values.get(name) for name in node.inputs[1:5])
    if any(a is None for a in (scale, shift, mean, var)):
        raise reader.fail(node, "needs constant scale, bias, mean and variance")
    # ONNX's momentum weighs the running value, PyTorch's the batch; both kept in float32 (0.9 is 0.89999998)
    momentum = round(1 - float(str(np.float32(attributes.get("momentum", 0.9)))), 7)
    eps = float(str(np.float32(attributes.get("epsilon", 1e-5))))
    arrays = {"scale": scale, "shift": shift, "running_mean": mean, "running_var": var}
    return (lambda activation: BatchNorm(eps, momentum, activation=activation)), arrays


def embedding(reader, node, attributes: dict) -> tuple:
    """An Embedding from a Gather of a constant table's rows (axis 0) by the model's input ids."""
    table = reader.values.get(node.inputs[0])
    if table is None or table.ndim != 2 or attributes.get("axis", 0) != 0 or reader.layers or reader.pending:
        raise reader.fail(node, "clnet imports a Gather as an embedding: rows (axis 0) of a constant 2-D table by "
                                "the model's input ids, first")
    reader.rank = 3
    return Embedding(*table.shape), {"weight": table}


def layer_norm(reader, node, attributes: dict, shape: tuple[int, ...]) -> tuple:
    """A LayerNorm over the last axes from `axis` (default -1), with its scale and shift."""
    axis = int(attributes.get("axis", -1)) % (len(shape) + 1)
    if axis == 0:
        raise reader.fail(node, "a normalization over the batch axis; clnet's LayerNorm normalizes within samples")
    normalized = shape[axis - 1:]
    scale = reader.values.get(node.inputs[1])
    shift = reader.values.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if scale is None:
        raise reader.fail(node, "needs a constant scale")
    try:
        arrays = {"scale": np.broadcast_to(scale, normalized).copy(),
                  "shift": np.broadcast_to(np.zeros((), scale.dtype) if shift is None else shift, normalized).copy()}
    except ValueError as exc:
        raise reader.fail(node, f"a scale or shift of another shape than the normalized {normalized}") from exc
    eps = float(f"{attributes.get('epsilon', 1e-5):.7g}")  # a float32 attribute: 1e-5, not 9.9999997e-06
    return LayerNorm(normalized, eps=eps), arrays
