"""clnet: deep learning on any OpenCL device (NVIDIA, AMD and Intel GPUs, and PoCL on CPUs).

    import clnet
    with clnet.Context("pocl") as ctx:     # choose a device; leaving the block releases everything
        net = clnet.InferenceNetwork(ctx, 2, [clnet.FullyConnected(4, "tanh"),
                                              clnet.FullyConnected(1, "sigmoid")])
        clnet.init(net, "xavier", seed=7)
        training = clnet.TrainingNetwork(net, x)
        clnet.sgd(training, y, "quadratic", epochs=2000, learning_rate=0.05)
        net(x).get()

See README.md and DESIGN.md for the whole API.
"""

from . import rng, tuning
from .activations import ACTIVATIONS
from .context import Context
from .costs import COSTS
from .device import DeviceInfo, devices
from .errors import (
    ClnetError,
    ContextClosedError,
    DeviceCapabilityError,
    DeviceNotFoundError,
    KernelBuildError,
    NoPlatformError,
    TemplateError,
)
from .initialization import INIT_METHODS, init
from .layers import FullyConnected
from .network import InferenceNetwork, TrainingNetwork
from .optimizers import SGD, Adam
from .rng import Philox
from .saving import load
from .training import fit, sgd
from .tuning import tune

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "SGD",
    "Adam",
    "COSTS",
    "INIT_METHODS",
    "ClnetError",
    "Context",
    "ContextClosedError",
    "DeviceCapabilityError",
    "DeviceInfo",
    "DeviceNotFoundError",
    "FullyConnected",
    "InferenceNetwork",
    "KernelBuildError",
    "NoPlatformError",
    "Philox",
    "TemplateError",
    "TrainingNetwork",
    "devices",
    "fit",
    "init",
    "load",
    "rng",
    "sgd",
    "tune",
    "tuning",
]
