"""Weight initialization on the device, from one Philox stream for the whole network.

    method           weights                                   biases
    auto             he for the relu family (relu, leaky_relu, elu), xavier for the others
    uniform          U(0, 1)          (the article's first try) U(0, 1)
    gaussian         N(0, 1)          (its second)              N(0, 1)
    xavier, glorot   N(0, 2 / (inputs + outputs))               0
    xavier_uniform   U(-a, a), a = sqrt(6 / (inputs + outputs)) 0
    he               N(0, 2 / inputs)                           0
    lecun            N(0, 1 / inputs)                           0

The scaled methods set biases to zero: a bias adds no variance to keep in check, and zero is
what the papers (and PyTorch's and Keras' versions of them) start from. The same seed gives the
same network on every device: layer by layer, the weights and then the bias take the next
numbers of the stream. Every network starts with `auto` from seed 0 unless told otherwise.
"""

from __future__ import annotations

import math
import secrets

from ..ops import memory
from ..ops.rng import Philox
from .layers import FullyConnectedLayer

INIT_METHODS = ("auto", "uniform", "gaussian", "xavier", "glorot", "xavier_uniform", "he", "lecun")
RELU_FAMILY = ("relu", "leaky_relu", "elu")


def method_for(activation: str) -> str:
    """The `auto` method of a layer with this activation: he for the relu family, else xavier."""
    return "he" if activation in RELU_FAMILY else "xavier"


def _draw(g: Philox, method: str, layer: FullyConnectedLayer) -> None:
    inputs, outputs = layer.inputs, layer.outputs
    if method == "auto":
        method = method_for(layer.activation)
    if method == "uniform":
        g.uniform(layer.weights)
        g.uniform(layer.bias)
        return
    if method == "gaussian":
        g.normal(layer.weights)
        g.normal(layer.bias)
        return
    if method in ("xavier", "glorot"):
        g.normal(layer.weights, std=math.sqrt(2 / (inputs + outputs)))
    elif method == "xavier_uniform":
        limit = math.sqrt(6 / (inputs + outputs))
        g.uniform(layer.weights, -limit, limit)
    elif method == "he":
        g.normal(layer.weights, std=math.sqrt(2 / inputs))
    else:  # lecun
        g.normal(layer.weights, std=math.sqrt(1 / inputs))
    memory.fill(layer.ctx, layer.bias, 0.0)


def init(net, method: str = "auto", seed: int | None = None):
    """Fill every layer's weights and biases of the network `net` by `method` (see the table
    above); returns net.

    seed: 0..2**64-1 for a reproducible network; None draws a fresh one (kept in net.seed).
    """
    layers = getattr(net, "layers", None)
    if not isinstance(layers, list) or not all(isinstance(layer, FullyConnectedLayer) for layer in layers):
        raise TypeError(f"init takes a clnet.InferenceNetwork, got {type(net).__name__}")
    if method not in INIT_METHODS:
        raise ValueError(f"unknown init method {method!r}; choose one of {', '.join(INIT_METHODS)}")
    g = Philox(net.ctx, secrets.randbits(64) if seed is None else seed)
    for layer in layers:
        _draw(g, method, layer)
    net.seed = g.seed
    return net
