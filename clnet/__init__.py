"""clnet: deep learning on any OpenCL device (NVIDIA, AMD and Intel GPUs, and PoCL on CPUs).

    import clnet
    with clnet.Context("pocl") as ctx:     # choose a device; leaving the block releases everything
        net = clnet.InferenceNetwork(ctx, 2, [clnet.FullyConnected(4, "tanh"),
                                              clnet.FullyConnected(1, "sigmoid")])
        clnet.init(net, "xavier", seed=7)      # optional: a new network starts initialized
        training = clnet.TrainingNetwork(net, x)
        clnet.sgd(training, y, "quadratic", epochs=2000, learning_rate=0.05)
        net(x).get()

See README.md and DESIGN.md for the whole API.
"""

from . import distributed
from .app.selfcheck import check_device
from .nn import (
    INIT_METHODS,
    Activation,
    AdaptiveAvgPool2d,
    Add,
    AvgPool2d,
    BatchNorm,
    BuiltLayer,
    Concat,
    Conv1d,
    Conv2d,
    Dropout,
    Embedding,
    Flatten,
    FullyConnected,
    GlobalAvgPool2d,
    Layer,
    LayerNorm,
    LayerTraining,
    MaxPool2d,
    MultiHeadAttention,
    Multiply,
    Parameter,
    PositionalEmbedding,
    Residual,
    SequenceMean,
    TrainingNetwork,
    Upsample2d,
    init,
    register_layer,
)
from .ops import rng
from .ops.activations import ACTIVATIONS
from .ops.costs import COSTS
from .ops.rng import Philox
from .runtime.context import Context
from .runtime.device import DeviceInfo, devices
from .runtime.errors import (
    ClnetError,
    ContextClosedError,
    DeviceCapabilityError,
    DeviceMemoryError,
    DeviceNotFoundError,
    KernelBuildError,
    NoPlatformError,
    TemplateError,
    TrainingDivergedError,
)
from .train import schedules
from .train.callbacks import Callback
from .train.loops import sgd
from .train.minibatch import fit
from .train.model import InferenceNetwork, from_onnx, load
from .train.optimizers import SGD, Adam, AdamW, Optimizer, RMSprop, register_optimizer
from .train.schedules import Constant, Cosine, Exponential, StepDecay
from .tuning import tune

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "AdaptiveAvgPool2d",
    "Add",
    "AvgPool2d",
    "BatchNorm",
    "BuiltLayer",
    "Callback",
    "Concat",
    "Conv1d",
    "Conv2d",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAvgPool2d",
    "Layer",
    "LayerNorm",
    "LayerTraining",
    "MaxPool2d",
    "MultiHeadAttention",
    "Multiply",
    "Parameter",
    "PositionalEmbedding",
    "Residual",
    "SequenceMean",
    "register_layer",
    "SGD",
    "StepDecay",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "register_optimizer",
    "COSTS",
    "INIT_METHODS",
    "ClnetError",
    "Constant",
    "Cosine",
    "Context",
    "ContextClosedError",
    "DeviceCapabilityError",
    "DeviceMemoryError",
    "DeviceInfo",
    "DeviceNotFoundError",
    "Exponential",
    "FullyConnected",
    "InferenceNetwork",
    "KernelBuildError",
    "NoPlatformError",
    "Philox",
    "TemplateError",
    "TrainingDivergedError",
    "TrainingNetwork",
    "Upsample2d",
    "check_device",
    "devices",
    "distributed",
    "fit",
    "from_onnx",
    "init",
    "load",
    "rng",
    "schedules",
    "sgd",
    "tune",
]
