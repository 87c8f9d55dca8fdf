"""torchvision's classifiers as clnet networks, through ONNX: what tests/test_zoo.py,
bench/bench_zoo.py and examples/finetune.py share.

torchvision from the package index is built for CUDA and fails to import beside PyTorch's CPU
build (`operator torchvision::nms does not exist`): declaring its two operator schemas first
lets the model classes load (`load_torchvision`); the detection operators stay unusable."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np


def load_torchvision():
    """The torchvision module, importable beside PyTorch's CPU build; ImportError without it."""
    import torch

    try:
        import torchvision
    except RuntimeError:  # operator torchvision::nms does not exist
        library = torch.library.Library("torchvision", "FRAGMENT")
        for name in ("nms", "qnms"):
            with contextlib.suppress(RuntimeError):  # already declared in this process
                library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        load_torchvision.library = library  # kept alive: the schemas live as long as it does
        import torchvision
    return torchvision


def classifier(name: str, seed: int = 0, classes: int = 1000):
    """torchvision's `name` (random weights from `seed`) in eval mode, its batch-norm statistics
    and affine parameters made non-trivial, so that an import that ignored them would show."""
    import torch

    torchvision = load_torchvision()
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, num_classes=classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return model.eval()


def export(model, x, path: str | Path, dynamo: bool = False) -> Path:
    """Write the PyTorch model as ONNX for inputs like x (numpy, a batch), with either of
    torch.onnx.export's exporters (the TorchScript one at opset 13, dynamo at 18); quietly."""
    import torch

    path = Path(path)
    options = {"dynamo": True} if dynamo else {"dynamo": False, "opset_version": 13,
                                               "dynamic_axes": {"x": {0: "batch"}, "y": {0: "batch"}}}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.tensor(np.asarray(x, np.float32)),), str(path), input_names=["x"],
                          output_names=["y"], **options)
    return path


def imported(ctx, name: str, size: int, seed: int = 0, classes: int = 1000, dtype=np.float32):
    """(torchvision's `name` as `classifier` makes it, the clnet network imported from its ONNX
    export) for size x size images. alexnet's and vgg's adaptive pooling is written by the
    exporters as a plain pooling only where it is one (224 x 224): they are exported there without
    it and given clnet's AdaptiveAvgPool2d before their Flatten, on images of `size`."""
    import tempfile

    import torch

    from ..nn.pooling import AdaptiveAvgPool2d
    from ..train.model import InferenceNetwork, from_onnx

    model = classifier(name, seed, classes)
    pooled = getattr(model, "avgpool", None)
    adaptive = name.startswith(("vgg", "alexnet")) and isinstance(pooled, torch.nn.AdaptiveAvgPool2d)
    if adaptive:
        model.avgpool = torch.nn.Identity()
    at = 224 if adaptive else size
    with tempfile.TemporaryDirectory() as folder:
        net = from_onnx(export(model, np.zeros((2, 3, at, at), np.float32), Path(folder) / "m.onnx"), ctx, dtype)
    if not adaptive:
        return model, net
    model.avgpool = pooled
    specs, arrays = list(net.specs), net.host_arrays()
    flatten = next(i for i, spec in enumerate(specs) if type(spec).__name__ == "Flatten")
    specs.insert(flatten, AdaptiveAvgPool2d(pooled.output_size))
    renamed = {}
    for key, array in arrays.items():
        index, rest = key.split(".", 1)
        i = int(index.removeprefix("layer_"))
        renamed[f"layer_{i + (i >= flatten)}.{rest}"] = array
    net.release()
    resized = InferenceNetwork(ctx, (3, size, size), specs, dtype=dtype, init=None)
    resized.set_arrays(renamed)
    return model, resized
