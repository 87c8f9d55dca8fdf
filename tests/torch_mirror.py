"""The PyTorch model that a list of clnet layers describes, built from torch.nn's own modules (the
independent reference of tests/test_blocks.py), with the clnet network's arrays copied into it."""

import numpy as np
import torch

import clnet

ACTIVATIONS = {"linear": torch.nn.Identity, "relu": torch.nn.ReLU, "relu6": torch.nn.ReLU6, "tanh": torch.nn.Tanh,
               "sigmoid": torch.nn.Sigmoid, "silu": torch.nn.SiLU, "gelu": torch.nn.GELU,
               "hardswish": torch.nn.Hardswish, "hardsigmoid": torch.nn.Hardsigmoid}


class Merge(torch.nn.Module):
    """Branches (nn.Sequential each; empty: the input itself) merged as a clnet block merges them."""

    def __init__(self, branches, merge):
        super().__init__()
        self.branches, self.merge = torch.nn.ModuleList(branches), merge

    def forward(self, x):
        outs = [branch(x) for branch in self.branches]
        if self.merge == "concat":
            return torch.cat(outs, dim=1)
        if self.merge == "multiply":
            main, factor = outs
            return main * factor.reshape(factor.shape[0], *factor.shape[1:], *[1] * (main.ndim - factor.ndim))
        total = outs[0]
        for more in outs[1:]:
            total = total + more
        return total


def module(spec, shape):
    """(the torch module of one clnet layer on samples of `shape`, its output shape)."""
    out = spec.output_shape(shape)
    if isinstance(spec, clnet.nn.Branches):
        branches, inner = [], shape
        for branch in spec.branches:
            mods, inner = [], shape
            for s in branch:
                m, inner = module(s, inner)
                mods.append(m)
            branches.append(torch.nn.Sequential(*mods))
        return Merge(branches, spec.merge), out
    activation = ACTIVATIONS[spec.activation]()
    if isinstance(spec, clnet.FullyConnected):
        return torch.nn.Sequential(torch.nn.Linear(shape[0], spec.outputs), activation), out
    if isinstance(spec, clnet.Conv2d):
        conv = torch.nn.Conv2d(shape[0], spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
                               spec.dilation, spec.groups, spec.bias)
        return torch.nn.Sequential(conv, activation), out
    if isinstance(spec, clnet.BatchNorm):
        kind = torch.nn.BatchNorm2d if len(shape) == 3 else torch.nn.BatchNorm1d
        return kind(shape[0], spec.eps, spec.momentum, spec.affine), out
    if isinstance(spec, clnet.Activation):
        return activation, out
    if isinstance(spec, clnet.MaxPool2d):
        return torch.nn.MaxPool2d(spec.kernel_size, spec.stride, spec.padding), out
    if isinstance(spec, clnet.GlobalAvgPool2d):
        return torch.nn.AdaptiveAvgPool2d(1), out
    if isinstance(spec, clnet.Flatten):
        return torch.nn.Flatten(), out
    raise NotImplementedError(repr(spec))


def mirror(net, dtype):
    """The torch model of `net`, with net's arrays (parameters and running statistics) in it."""
    mods, shape = [], net.input_shape
    for spec in net.specs:
        m, shape = module(spec, shape)
        mods.append(m)
    model = torch.nn.Sequential(*mods).to(torch.float64 if dtype == np.float64 else torch.float32)
    arrays = net.host_arrays()
    with torch.no_grad():
        for name, target in torch_arrays(model, net).items():
            target.copy_(torch.tensor(arrays[name]))
    return model


TORCH_NAMES = {"weights": "weight", "bias": "bias", "scale": "weight", "shift": "bias",
               "running_mean": "running_mean", "running_var": "running_var"}


def torch_arrays(model, net) -> dict:
    """clnet's array names -> the torch model's tensors (parameters and buffers)."""
    found = {}

    def walk(spec, mod, prefix):
        if isinstance(spec, clnet.nn.Branches):
            for b, branch in enumerate(spec.branches):
                for j, s in enumerate(branch):
                    walk(s, mod.branches[b][j], f"{prefix}{spec.branch_name(b)}.{j}.")
            return
        inner = mod[0] if isinstance(mod, torch.nn.Sequential) else mod
        for p in spec.parameters(placed_shapes[id(spec)]):
            found[prefix + p.name] = getattr(inner, TORCH_NAMES[p.name])

    placed_shapes = {}

    def shapes(specs, shape):
        for spec in specs:
            placed_shapes[id(spec)] = shape
            if isinstance(spec, clnet.nn.Branches):
                for branch in spec.branches:
                    shapes(branch, shape)
            shape = spec.output_shape(shape)

    shapes(net.specs, net.input_shape)
    for i, (spec, mod) in enumerate(zip(net.specs, model)):
        walk(spec, mod, f"layer_{i}.")
    return found
