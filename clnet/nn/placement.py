"""Where each layer of a sequence sits: its input and output shapes and its parameters, each
parameter told what initialization needs (its fan-in, the activation after it) and whether it
trains. Networks place their layers with it, and so do blocks their branches; no device needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from .protocol import Layer, Parameter


@dataclass(frozen=True)
class Placement:
    """Where a layer sits in a sequence: its input and output shapes and its parameters."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    parameters: list[Parameter]


def following_activation(specs: Sequence[Layer], parameters: list[list[Parameter]], i: int) -> str:
    """The activation that follows layer i's weights (what init="auto" picks by): its own, or,
    when it applies none, that of the parameterless layer right after it (FullyConnected(64) then
    Activation("relu")), not that of the next layer with weights of its own."""
    own = specs[i].activation
    if own == "linear" and i + 1 < len(specs) and not parameters[i + 1]:
        return specs[i + 1].activation
    return own


def resolve(parameters: list[Parameter], activation: str, trainable: bool) -> list[Parameter]:
    """A layer's parameters as the network holds them: each knows the activation after it (unless
    a block inside told it already), a bias the fan-in of its layer's weights (PyTorch's default
    draws it from U(+-1/sqrt(fan_in))), and a frozen layer's are not trainable."""
    fan_in = next((p.fan_in for p in parameters if p.init == "weight"), 1)
    resolved = []
    for p in parameters:
        changes = {}
        if p.activation is None:
            changes["activation"] = activation
        if p.init == "bias" and p.fan_in == 1:
            changes["fan_in"] = fan_in
        if not trainable and p.trainable:
            changes["trainable"] = False
        resolved.append(dataclasses.replace(p, **changes) if changes else p)
    return resolved


def place(input_shape: tuple[int, ...], specs: Sequence[Layer]) -> list[Placement]:
    """The shapes and parameters of each layer of a sequence on samples of `input_shape`;
    ValueError naming the layer that cannot take its input."""
    shapes, found, shape = [], [], tuple(input_shape)
    for i, spec in enumerate(specs):
        try:
            out = tuple(int(n) for n in spec.output_shape(shape))
            found.append(list(spec.parameters(shape)))
        except ValueError as exc:
            raise ValueError(f"layer {i} ({spec!r}): {exc}") from exc
        shapes.append((shape, out))
        shape = out
    return [Placement(inp, out, resolve(found[i], following_activation(specs, found, i), spec.trainable))
            for i, (spec, (inp, out)) in enumerate(zip(specs, shapes))]


def check_layers(layers, what: str = "layers") -> list[Layer]:
    """`layers` as a list of clnet.Layer objects; TypeError otherwise."""
    layers = list(layers) if isinstance(layers, Sequence) else layers
    if not isinstance(layers, list) or not all(isinstance(layer, Layer) for layer in layers):
        raise TypeError(f"{what} must be a list of clnet.FullyConnected, Conv2d, Activation, Flatten, Dropout or "
                        f"other clnet.Layer objects, got {layers!r}")
    return layers
