"""Weight initialization on the device, from one Philox stream for the whole network.

    method           weights (fan_in, fan_out: the layer's)    biases
    auto             pytorch for the relu family (relu, relu6, leaky_relu, elu), xavier for
                     the others: the best of he, lecun, xavier and pytorch on scikit-learn's
                     four small sets (bench/bench_init_choice.py, bench/RESULTS.md)
    uniform, pytorch U(-a, a), a = 1 / sqrt(fan_in)               U(-a, a), a of the weights
                     (torch.nn.Linear's and Conv2d's default)
    uniform01        U(0, 1)          (the article's first try) U(0, 1)
    gaussian         N(0, 1)          (its second)              N(0, 1)
    xavier, glorot   N(0, 2 / (fan_in + fan_out))               0
    xavier_uniform   U(-a, a), a = sqrt(6 / (fan_in + fan_out)) 0
    he               N(0, 2 / fan_in)                           0
    lecun            N(0, 1 / fan_in)                           0

Each layer says what its parameters are (clnet.nn.protocol.Parameter): weights with their fan-in
and fan-out, biases, or arrays that start at zeros or ones, or embedding tables drawn from N(0, 1)
(which no method changes); the network's
placement (clnet.nn.placement) tells each the activation after it and a bias its weights' fan-in,
inside blocks too, so "auto" and PyTorch's ranges are per parameter. The scaled
methods set biases to zero: a bias adds no variance to keep in check, and zero is what the papers
(and PyTorch's and Keras' versions of them) start from. The same seed gives the same network on
every device: layer by layer, each weight and bias in order takes the next numbers of the stream.
Every network starts with `auto` from seed 0 unless told otherwise.
"""

from __future__ import annotations

import math
import secrets

import pyopencl.array as cla

from ..ops import memory
from ..ops.rng import Philox
from .protocol import Parameter

INIT_METHODS = ("auto", "uniform", "pytorch", "uniform01", "gaussian", "xavier", "glorot", "xavier_uniform", "he",
                "lecun")
RELU_FAMILY = ("relu", "relu6", "leaky_relu", "elu")


def method_for(activation: str) -> str:
    """The `auto` method of a layer with this activation: PyTorch's default for the relu family
    (it beat He by 0.035 in the mean score of four sets; bench/RESULTS.md), else xavier (level
    with PyTorch's default for tanh layers)."""
    return "pytorch" if activation in RELU_FAMILY else "xavier"


def _draw(g: Philox, method: str, parameter: Parameter, array: cla.Array) -> None:
    """Fill one parameter (a bias's fan_in is its layer's weights', which PyTorch's range uses)."""
    ctx = g.ctx
    if parameter.init in ("zeros", "ones"):
        memory.fill(ctx, array, 0.0 if parameter.init == "zeros" else 1.0)
    elif parameter.init == "normal":  # embedding tables: N(0, 1) whatever the method, as PyTorch's
        g.normal(array)
    elif method in ("uniform01", "gaussian"):  # weights and biases alike
        (g.uniform if method == "uniform01" else g.normal)(array)
    elif method in ("uniform", "pytorch"):
        limit = 1 / math.sqrt(parameter.fan_in)
        g.uniform(array, -limit, limit)
    elif parameter.init == "bias":
        memory.fill(ctx, array, 0.0)
    elif method in ("xavier", "glorot"):
        g.normal(array, std=math.sqrt(2 / (parameter.fan_in + parameter.fan_out)))
    elif method == "xavier_uniform":
        limit = math.sqrt(6 / (parameter.fan_in + parameter.fan_out))
        g.uniform(array, -limit, limit)
    elif method == "he":
        g.normal(array, std=math.sqrt(2 / parameter.fan_in))
    else:  # lecun
        g.normal(array, std=math.sqrt(1 / parameter.fan_in))


def init(net, method: str = "auto", seed: int | None = None):
    """Fill every layer's weights and biases of the network `net` by `method` (see the table
    above), and reset its zeros and ones arrays (running statistics); returns net.

    seed: 0..2**64-1 for a reproducible network; None draws a fresh one (kept in net.seed).
    """
    placements, layers = getattr(net, "placements", None), getattr(net, "layers", None)
    if placements is None or not isinstance(layers, list):
        raise TypeError(f"init takes a clnet.InferenceNetwork, got {type(net).__name__}")
    if method not in INIT_METHODS:
        raise ValueError(f"unknown init method {method!r}; choose one of {', '.join(INIT_METHODS)}")
    g = Philox(net.ctx, secrets.randbits(64) if seed is None else seed)
    for layer, placed in zip(layers, placements):
        for parameter in placed.parameters:  # each knows its fan-in and the activation after it
            chosen = method_for(parameter.activation or "linear") if method == "auto" else method
            _draw(g, chosen, parameter, layer.arrays[parameter.name])
    net.seed = g.seed
    return net
