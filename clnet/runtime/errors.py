"""The exception types clnet raises.

Bad input gets the built-in ValueError or TypeError with a message that names what was wrong
and what is allowed; the classes here are for what goes wrong with devices, contexts and
kernels. Every one of them derives from ClnetError.
"""


class ClnetError(Exception):
    """Base class of clnet's own errors."""


class NoPlatformError(ClnetError, RuntimeError):
    """No OpenCL platform (driver) is installed, or none of them has a device."""


class DeviceNotFoundError(ClnetError, LookupError):
    """A device spec matched none of the OpenCL devices of this machine."""


class DeviceCapabilityError(ClnetError, RuntimeError):
    """The device lacks something the request needs, such as fp64 for float64."""


class ContextClosedError(ClnetError, RuntimeError):
    """Something belonging to a closed clnet.Context was used."""


class TemplateError(ClnetError):
    """A kernel template could not be found or rendered."""


class KernelBuildError(ClnetError):
    """An OpenCL program failed to build; holds the build log and the saved source."""

    def __init__(self, message: str, log: str, source_path: str | None):
        super().__init__(message)
        self.log = log
        self.source_path = source_path


class DeviceMemoryError(ClnetError, MemoryError):
    """A buffer is larger than the device allows, or the device ran out of memory."""


class TrainingDivergedError(ClnetError, FloatingPointError):
    """The cost became NaN or infinite during training; the network keeps its last finite weights."""

    def __init__(self, message: str, epoch: int):
        super().__init__(message)
        self.epoch = epoch
