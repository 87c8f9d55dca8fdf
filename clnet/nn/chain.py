"""Wiring a sequence of layers' training halves: each reads the previous one's `out` and writes
dC/dx into the previous one's `delta`. A network wires its layers so, and a block each branch.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyopencl.array as cla

from .placement import Placement
from .protocol import BuiltLayer, LayerTraining, Link


def positions(first: int, specs: Sequence) -> list[int]:
    """The position of each layer of a sequence that starts at `first` (a block takes as many
    positions as it has layers inside, so that every layer draws dropout masks of its own)."""
    found = []
    for spec in specs:
        found.append(first)
        first += spec.positions()
    return found


def link_chain(layers: Sequence[BuiltLayer], placements: Sequence[Placement], batch: int, x: cla.Array,
               grad_x: cla.Array | None, gradients: Sequence[dict[str, cla.Array]], indices: Sequence[int],
               is_output: bool) -> list[LayerTraining]:
    """The training halves of a sequence of layers for batches of `batch` rows, reading x.

    grad_x: where the first layer writes dC/dx (None: nothing before the sequence needs it; then
    a layer's grad_x is None until some layer before it has trainable parameters).
    gradients[i], indices[i]: layer i's gradient views by name and its position; is_output: the
    last layer is the network's output layer."""
    trainers: list[LayerTraining] = []
    needs_gradient = grad_x is not None
    for j, (layer, placed) in enumerate(zip(layers, placements)):
        wanted = (grad_x if j == 0 else trainers[-1].delta) if needs_gradient else None
        link = Link(batch, x, wanted, gradients[j], layer.arrays, indices[j], is_output and j == len(layers) - 1)
        trainer = layer.training(link)
        if trainer.out is None or tuple(trainer.out.shape) != (batch, *placed.output_shape):
            raise TypeError(f"layer {indices[j]} ({layer.spec!r}): its training half must set `out` to a "
                            f"{(batch, *placed.output_shape)} array")
        needs_gradient = needs_gradient or bool(gradients[j])  # trainable parameters
        if needs_gradient and trainer.delta is None:
            raise TypeError(f"layer {indices[j]} ({layer.spec!r}): its training half must set `delta`, which the "
                            "next layer writes dC/d(out) into")
        trainers.append(trainer)
        x = trainer.out
    return trainers


def needs_backward(trainer: LayerTraining) -> bool:
    """Whether a training half's backward pass has anything to compute: gradients of its own, or
    dC/dx for a layer before it (frozen layers at the start of a network have neither)."""
    return trainer.grad_x is not None or bool(trainer.gradients)


def forward_chain(layers: Sequence[BuiltLayer], x: cla.Array) -> cla.Array:
    """Inference through a sequence of built layers (each allocates its output)."""
    for layer in layers:
        x = layer.forward(x)
    return x
