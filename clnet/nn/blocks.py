"""Blocks: layers whose inside branches. Each branch is a list of layers (any clnet.Layer, blocks
too) applied to the block's input, [] the input itself; the block merges the branches' outputs.

    Residual(body, shortcut=None)   body(x) + shortcut(x) (ResNet; None: x itself)
    Add(*branches)                  the sum of the branches
    Concat(*branches)               the branches side by side along each sample's first axis (the
                                    channels of images: DenseNet, SqueezeNet's fire, Inception)
    Multiply(main, factor)          main(x) * factor(x), the factor broadcast over the pixels when it
                                    is (channels, 1, 1) (squeeze-and-excitation)

A block is one layer of its network: its parameters are the branches' (named
"<branch>.<layer>.<name>", views of the network's one parameter buffer), so initialization,
saving, checkpoints, the optimizer's one launch and MPI see them as any layer's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pyopencl.array as cla

from ..ops import memory, merge
from . import registry
from .chain import forward_chain, link_chain, needs_backward, positions
from .placement import Placement, check_layers, place
from .protocol import BuiltLayer, Layer, LayerTraining, Link, Step


def _branch(value, what: str) -> list[Layer]:
    """A branch as a list of layers: a list (of layers or their saved descriptions), or one layer."""
    if isinstance(value, Layer):
        return [value]
    if isinstance(value, (list, tuple)):
        value = [registry.from_description(v) if isinstance(v, dict) else v for v in value]
    return check_layers(value, what)


class Branches(Layer):
    """What every block shares: branches placed on the block's input, their outputs merged by
    `merge` ("add", "concat" or "multiply")."""

    merge = "add"

    def __init__(self, *branches: Sequence[Layer] | Layer):
        self.branches = [_branch(b, f"branch {i} of {type(self).__name__}") for i, b in enumerate(branches)]
        if len(self.branches) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two branches (a list of layers each, [] for "
                             f"the input itself), got {len(self.branches)}")

    def branch_name(self, b: int) -> str:
        return f"branch{b}"

    def prefix(self, b: int, j: int) -> str:
        """What the names of layer j of branch b start with among the block's arrays."""
        return f"{self.branch_name(b)}.{j}."

    def positions(self) -> int:
        return max(1, sum(spec.positions() for branch in self.branches for spec in branch))

    def placements(self, input_shape: tuple[int, ...]) -> list[list[Placement]]:
        """Each branch's placement on the block's input; ValueError naming the branch."""
        found = []
        for b, branch in enumerate(self.branches):
            try:
                found.append(place(input_shape, branch))
            except ValueError as exc:
                raise ValueError(f"{self.branch_name(b)}: {exc}") from exc
        return found

    def branch_shapes(self, input_shape) -> list[tuple[int, ...]]:
        return [placed[-1].output_shape if placed else tuple(input_shape) for placed in self.placements(input_shape)]

    def output_shape(self, input_shape):
        shapes = self.branch_shapes(input_shape)
        if any(shape != shapes[0] for shape in shapes):
            raise ValueError(f"the branches of {self.merge} must give one shape, got {shapes}")
        return shapes[0]

    def parameters(self, input_shape):
        return [dataclasses.replace(p, name=self.prefix(b, j) + p.name)
                for b, placed in enumerate(self.placements(input_shape))
                for j, layer in enumerate(placed) for p in layer.parameters]

    def training_bytes(self, batch, input_shape, itemsize, is_output) -> dict[str, int]:
        found = super().training_bytes(batch, input_shape, itemsize, is_output)
        found["dC/dx of each branch"] = batch * math.prod(input_shape) * itemsize * (len(self.branches) - 1)
        for b, (branch, placed) in enumerate(zip(self.branches, self.placements(input_shape))):
            for j, (spec, at) in enumerate(zip(branch, placed)):
                for kind, size in spec.training_bytes(batch, at.input_shape, itemsize, False).items():
                    found[f"{self.prefix(b, j)[:-1]}'s {kind}"] = size
        return found

    def build(self, ctx, input_shape, dtype, arrays) -> BranchesLayer:
        return BranchesLayer(self, ctx, input_shape, dtype, arrays)

    def config(self) -> dict:
        return {"branches": [[registry.describe(spec) for spec in branch] for branch in self.branches]}

    @classmethod
    def from_config(cls, config: dict) -> Branches:
        return cls(*config["branches"])

    def brief(self) -> str:
        return f"{type(self).__name__.lower()} of {' | '.join(str(len(b)) for b in self.branches)} layers"

    def __repr__(self) -> str:
        inside = ", ".join("[" + ", ".join(map(repr, branch)) + "]" for branch in self.branches)
        return f"{type(self).__name__}({inside}{', trainable=False' if not self.trainable else ''})"


class Add(Branches):
    """The sum of two or more branches of one output shape."""


class Residual(Add):
    """body(x) + shortcut(x), ResNet's block: the shortcut is x itself (None) or a projection,
    such as [Conv2d(channels, 1, stride=2, bias=False), BatchNorm()]. Put Activation("relu")
    after it for ResNet's activation after the sum."""

    def __init__(self, body: Sequence[Layer] | Layer, shortcut: Sequence[Layer] | Layer | None = None):
        super().__init__(body, [] if shortcut is None else shortcut)

    def branch_name(self, b: int) -> str:
        return ("body", "shortcut")[b]

    def config(self) -> dict:
        body, shortcut = super().config()["branches"]
        return {"body": body, "shortcut": shortcut or None}

    @classmethod
    def from_config(cls, config: dict) -> Residual:
        return cls(config["body"], config.get("shortcut"))

    def __repr__(self) -> str:
        body, shortcut = self.branches
        return (f"Residual([{', '.join(map(repr, body))}]" + (f", shortcut=[{', '.join(map(repr, shortcut))}]"
                if shortcut else "") + (", trainable=False)" if not self.trainable else ")"))


class Concat(Branches):
    """The branches side by side along the first axis of each sample: channels of images (all
    else equal), or features of (batch, features) rows."""

    merge = "concat"

    def output_shape(self, input_shape):
        shapes = self.branch_shapes(input_shape)
        if any(len(s) != len(shapes[0]) or s[1:] != shapes[0][1:] for s in shapes):
            raise ValueError(f"Concat joins branches along the first axis: the others must agree, got {shapes}")
        return (sum(s[0] for s in shapes), *shapes[0][1:])


class Multiply(Branches):
    """main(x) * factor(x), elementwise: the factor of main's shape, or of (channels, 1, 1) or
    (channels,) for (channels, ...) images, broadcast over each channel's pixels (squeeze and
    excitation: Multiply([], [GlobalAvgPool2d(), Conv2d(c // 4, 1, activation="relu"),
    Conv2d(c, 1, activation="sigmoid")]))."""

    merge = "multiply"

    def __init__(self, main: Sequence[Layer] | Layer, factor: Sequence[Layer] | Layer):
        super().__init__(main, factor)

    def output_shape(self, input_shape):
        main, factor = self.branch_shapes(input_shape)
        if factor != main and (math.prod(factor) != main[0] or factor[0] != main[0]):
            raise ValueError(f"Multiply's factor must have the main branch's shape {main}, or ({main[0]}, 1, 1) to "
                             f"scale each channel, got {factor}")
        return main


class BranchesLayer(BuiltLayer):
    """The inference half: each branch's layers built on views of the block's arrays."""

    def __init__(self, spec: Branches, ctx, input_shape, dtype, arrays):
        super().__init__(spec, ctx, input_shape, dtype, arrays)
        self.placements = spec.placements(self.input_shape)
        self.branches: list[list[BuiltLayer]] = []
        for b, (branch, placed) in enumerate(zip(spec.branches, self.placements)):
            self.branches.append([layer.build(ctx, at.input_shape, self.dtype, {
                p.name: arrays[spec.prefix(b, j) + p.name] for p in at.parameters})
                for j, (layer, at) in enumerate(zip(branch, placed))])

    def forward(self, x: cla.Array, out: cla.Array | None = None) -> cla.Array:
        out = self.empty(x.shape[0]) if out is None else out
        self.merge([forward_chain(branch, x) for branch in self.branches], out)
        return out

    def merge(self, outs: list[cla.Array], out: cla.Array) -> None:
        """out = the branches' outputs merged. Queued."""
        ctx, kind = self.ctx, self.spec.merge
        if kind == "add":
            merge.add(ctx, outs[0], outs[1], out)
            for more in outs[2:]:
                merge.add(ctx, out, more, out)
        elif kind == "concat":
            at = 0
            for part in outs:
                cols = part.size // part.shape[0]
                merge.copy_columns(ctx, part, out, 0, at, cols)
                at += cols
        elif outs[1].size == outs[0].size:
            merge.multiply(ctx, outs[0], outs[1], out)
        else:
            merge.scale_runs(ctx, outs[0], outs[1], out)

    def training(self, link: Link) -> BranchesTraining:
        return BranchesTraining(self, link)

    def to_onnx(self, graph, x: str, arrays: dict[str, np.ndarray]) -> str:
        """Each branch's nodes from x, then Add, Concat (axis 1) or Mul."""
        spec = self.spec
        outs = [graph.chain(branch, x, lambda j, layer, b=b: {n: arrays[spec.prefix(b, j) + n] for n in layer.arrays},
                            where=f"{spec.branch_name(b)} layer ") for b, branch in enumerate(self.branches)]
        shapes = [placed[-1].output_shape if placed else self.input_shape for placed in self.placements]
        if spec.merge == "multiply" and len(shapes[1]) < len(shapes[0]):  # ONNX broadcasts trailing axes
            target = [0, shapes[1][0]] + [1] * (len(shapes[0]) - 1)  # (batch, channels, 1, 1); 0: as it is
            outs[1] = graph.node("Reshape", [outs[1], graph.constant(target, "shape", np.int64)])
        if spec.merge == "concat":
            return graph.node("Concat", outs, axis=1)
        op = "Add" if spec.merge == "add" else "Mul"
        current = outs[0]
        for more in outs[1:]:
            current = graph.node(op, [current, more])
        return current

    def release(self) -> None:
        super().release()
        for branch in self.branches:
            for layer in branch:
                layer.release()


class BranchesTraining(LayerTraining):
    """The training half: each branch wired as a network wires its layers (clnet.nn.chain), the
    first branch writing dC/dx into grad_x and every other into a buffer of its own, summed into
    grad_x after the branches' backward passes (an identity branch of a sum adds delta itself)."""

    def __init__(self, layer: BranchesLayer, link: Link):
        super().__init__(layer, link)
        spec, queue = layer.spec, layer.ctx.queue
        self.out, self.delta = layer.empty(self.batch), layer.empty(self.batch)
        self.chains: list[list[LayerTraining]] = []
        self.sinks: list[cla.Array | None] = []  # where the merge's backward writes dC/d(branch output)
        self.sources: list[cla.Array | None] = []  # what is added into grad_x after the branches (b > 0)
        index = link.index
        for b, (built, placed) in enumerate(zip(layer.branches, layer.placements)):
            target = None
            if self.grad_x is not None:
                target = self.grad_x if b == 0 else cla.empty(queue, self.grad_x.shape, layer.dtype)
            if not built:  # the input itself: a sum's identity adds delta, without a copy
                summed = spec.merge == "add" and b > 0
                self.chains.append([])
                self.sinks.append(None if summed or target is None else target.reshape(self.x.shape))
                self.sources.append(self.delta if summed and target is not None else (target if b else None))
                continue
            # the network's gradient views are of the trainable parameters (not of a frozen block's)
            gradients = [{p.name: link.gradients[spec.prefix(b, j) + p.name] for p in at.parameters
                          if spec.prefix(b, j) + p.name in link.gradients} for j, at in enumerate(placed)]
            chain = link_chain(built, placed, self.batch, self.x, target, gradients,
                               positions(index, spec.branches[b]), is_output=False)
            index += sum(s.positions() for s in spec.branches[b])
            self.chains.append(chain)
            self.sinks.append(chain[-1].delta)
            self.sources.append(target if b else None)
        self.replayable = all(t.replayable for chain in self.chains for t in chain)

    def outputs(self) -> list[cla.Array]:
        return [chain[-1].out if chain else self.x for chain in self.chains]

    def forward(self, step: Step) -> None:
        for chain in self.chains:
            for trainer in chain:
                trainer.forward(step)
        self.layer.merge(self.outputs(), self.out)

    def backward(self, skip_activation_derivative: bool = False) -> None:
        self._merge_backward()
        for chain, sink in zip(self.chains, self.sinks):
            if chain and sink is not None:
                for trainer in reversed(chain):
                    if needs_backward(trainer):
                        trainer.backward()
        if self.grad_x is not None:
            flat = self.grad_x.reshape(self.grad_x.size)
            for source in self.sources[1:]:
                merge.add(self.ctx, flat, source.reshape(source.size), flat)

    def _merge_backward(self) -> None:
        """Each branch's sink = dC/d(its output), from delta."""
        ctx, kind, delta = self.ctx, self.layer.spec.merge, self.delta
        if kind == "add":
            for sink in self.sinks:
                if sink is not None:
                    memory.copy(ctx, delta, sink.reshape(delta.shape))
        elif kind == "concat":
            at = 0
            for part, sink in zip(self.outputs(), self.sinks):
                cols = part.size // part.shape[0]
                if sink is not None:
                    merge.copy_columns(ctx, delta, sink, at, 0, cols)
                at += cols
        else:
            (main, factor), (main_sink, factor_sink) = self.outputs(), self.sinks
            broadcast = factor.size != main.size
            if main_sink is not None:  # d main = delta * factor
                (merge.scale_runs if broadcast else merge.multiply)(ctx, delta, factor, main_sink)
            if factor_sink is not None:  # d factor = delta * main, summed over each run when broadcast
                (merge.run_dots if broadcast else merge.multiply)(ctx, delta, main, factor_sink)

    def release(self) -> None:
        super().release()
        for chain in self.chains:
            for trainer in chain:
                trainer.release()
        self.chains, self.sinks, self.sources = [], [], []


for _layer in (Add, Residual, Concat, Multiply):
    registry.register_layer(_layer)
