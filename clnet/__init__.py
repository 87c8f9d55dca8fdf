"""clnet: deep learning on any OpenCL device (NVIDIA, AMD and Intel GPUs, and PoCL on CPUs).

    import clnet
    clnet.devices()                        # every OpenCL device of this machine
    with clnet.Context("pocl") as ctx:     # choose one; leaving the block releases everything
        ...

See README.md and DESIGN.md for the whole API.
"""

from . import rng
from .context import Context
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
from .rng import Philox

__version__ = "0.1.0"

__all__ = [
    "ClnetError",
    "Context",
    "ContextClosedError",
    "DeviceCapabilityError",
    "DeviceInfo",
    "DeviceNotFoundError",
    "KernelBuildError",
    "NoPlatformError",
    "Philox",
    "TemplateError",
    "devices",
    "rng",
]
