"""Every OpenCL device of this machine, and choosing one of them from a spec.

The choice is a pure function of a spec and the device list (`choose`), so that it can be
tested against any list of devices, not only the ones this machine has.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyopencl as cl
import pyopencl.characterize as characterize

from . import checks, drivers, fastest
from .errors import DeviceNotFoundError, NoPlatformError

DEVICE_ENV = "CLNET_DEVICE"

# A vendor spec matches these substrings of the platform name, else of the device vendor.
VENDOR_ALIASES = {
    "nvidia": ("nvidia",),
    "amd": ("amd", "advanced micro devices"),
    "intel": ("intel",),
}
TYPE_SPECS = ("gpu", "cpu", "accelerator")
KNOWN_SPECS = ("pocl", *TYPE_SPECS, *VENDOR_ALIASES, "fastest", "P:D (indices)", "a device-name substring")

_TYPE_RANK = {"GPU": 3, "ACCELERATOR": 2, "CPU": 1}


@dataclass(frozen=True)
class DeviceInfo:
    """What clnet knows of one OpenCL device; `index` is "platform:device"."""

    index: str
    platform: str
    name: str
    vendor: str
    type: str
    compute_units: int
    clock_mhz: int
    global_mem_bytes: int
    local_mem_bytes: int
    max_work_group_size: int
    opencl_version: str
    driver_version: str
    fp64: bool
    unified_memory: bool
    max_alloc_bytes: int = 0  # CL_DEVICE_MAX_MEM_ALLOC_SIZE; 0: unknown (OpenCL's minimum, a quarter of global)
    native_float_width: int = 8  # CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT: 16 on AVX-512 CPUs
    native_double_width: int = 4
    cl_device: cl.Device | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """Identifies the device across runs (indices can change): platform|name|driver."""
        return f"{self.platform}|{self.name}|{self.driver_version}"

    def native_width(self, dtype) -> int:
        """Elements of `dtype` (float32 or float64) in one of the device's native vectors, as far
        as clnet's kernels use them: PoCL 3.0's compiler crashes (SIGSEGV) building any 512-bit
        GEMM tile for AMD's AVX-512 CPUs (Zen 4, seen on an EPYC), so there they are 256 bits; on
        Intel's CPUs, and with Intel's runtime on AMD's, 512-bit tiles build and run."""
        native = self.native_float_width if np.dtype(dtype) == np.float32 else self.native_double_width
        if self.is_pocl and self.type == "CPU" and "amd" in self.vendor.lower():
            return min(native, 32 // np.dtype(dtype).itemsize)
        return native

    @property
    def largest_allocation(self) -> int:
        """The largest buffer the device allows, in bytes."""
        return self.max_alloc_bytes or self.global_mem_bytes // 4

    @property
    def is_pocl(self) -> bool:
        return "portable computing language" in self.platform.lower() or "pocl" in self.platform.lower()


def _device_type(flags: int) -> str:
    if flags & cl.device_type.GPU:
        return "GPU"
    if flags & cl.device_type.ACCELERATOR:
        return "ACCELERATOR"
    if flags & cl.device_type.CPU:
        return "CPU"
    return "OTHER"


def _describe(platform_index: int, device_index: int, platform: cl.Platform, device: cl.Device) -> DeviceInfo:
    return DeviceInfo(
        index=f"{platform_index}:{device_index}",
        platform=platform.name.strip(),
        name=device.name.strip(),
        vendor=device.vendor.strip(),
        type=_device_type(device.type),
        compute_units=device.max_compute_units,
        clock_mhz=device.max_clock_frequency,
        global_mem_bytes=device.global_mem_size,
        local_mem_bytes=device.local_mem_size,
        max_work_group_size=device.max_work_group_size,
        opencl_version=device.version.strip(),
        driver_version=device.driver_version.strip(),
        fp64=characterize.has_double_support(device),
        unified_memory=bool(device.host_unified_memory),
        max_alloc_bytes=device.max_mem_alloc_size,
        native_float_width=device.native_vector_width_float,
        native_double_width=device.native_vector_width_double,
        cl_device=device,
    )


def devices() -> list[DeviceInfo]:
    """Every OpenCL device on every platform, in platform:device order.

    Raises NoPlatformError when no OpenCL driver (ICD) is installed or none has a device.
    """
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:
        raise NoPlatformError(
            f"No OpenCL platform found ({exc}). Install a driver: 'pip install pyopencl[pocl]' for "
            "the PoCL CPU device, or your GPU vendor's OpenCL runtime."
        ) from exc
    found = []
    for p, platform in enumerate(platforms):
        try:
            platform_devices = platform.get_devices()
        except cl.Error:  # a platform with no device raises DEVICE_NOT_FOUND
            continue
        found.extend(_describe(p, d, platform, device) for d, device in enumerate(platform_devices))
    loaded = {platform.name.strip() for platform in platforms}
    for name, library in drivers.registered.items():
        if name not in loaded:
            warnings.warn(f"clnet registered {library} for the OpenCL loader, but it did not load (a library it "
                          f"needs may be missing; OCL_ICD_DEBUG=7 shows the loader's reason)", stacklevel=2)
    if not found:
        names = ", ".join(p.name for p in platforms)
        raise NoPlatformError(f"The OpenCL platforms ({names}) have no devices.")
    return found


def format_table(infos: list[DeviceInfo], chosen: DeviceInfo | None = None,
                 extra: list[tuple[str, dict[str, str]]] | None = None) -> str:
    """A text table of devices, one line each; the chosen one is marked with '*'.

    extra: [(column title, {device index: value}), ...] for more columns."""
    extra = extra or []
    header = ("", "P:D", "type", "name", "platform", "CUs", "MHz", "global", "local", "wg", "fp64", "driver")
    header += tuple(title for title, _ in extra)
    rows = [header]
    for info in infos:
        rows.append((
            "*" if chosen is not None and info.index == chosen.index else "",
            info.index,
            info.type,
            info.name,
            info.platform[:28],
            str(info.compute_units),
            str(info.clock_mhz),
            f"{info.global_mem_bytes / 2**30:.1f}G",
            f"{info.local_mem_bytes // 1024}K",
            str(info.max_work_group_size),
            "yes" if info.fp64 else "no",
            info.driver_version,
        ) + tuple(values.get(info.index, "-") for _, values in extra))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _score(info: DeviceInfo) -> tuple:
    # GPUs first, discrete before integrated (unified memory), then raw throughput, then memory.
    return (_TYPE_RANK.get(info.type, 0), not info.unified_memory,
            info.compute_units * info.clock_mhz, info.global_mem_bytes)


def best(infos: list[DeviceInfo]) -> DeviceInfo:
    """The device most likely to be fastest: a discrete GPU, else any GPU, else the rest."""
    return max(infos, key=_score)


def _matches(spec: str, infos: list[DeviceInfo]) -> tuple[list[DeviceInfo], str]:
    """The devices a spec names, and in words what the spec was taken to mean."""
    key = spec.strip().lower()
    if key == "pocl":
        return [i for i in infos if i.is_pocl], "the PoCL platform"
    if key in TYPE_SPECS:
        return [i for i in infos if i.type.lower() == key], f"type {key.upper()}"
    if key in VENDOR_ALIASES:  # the vendor's own platforms; else its devices on another (PoCL on its CPU)
        aliases = VENDOR_ALIASES[key]
        own = [i for i in infos if any(a in i.platform.lower() for a in aliases)]
        return own or [i for i in infos if any(a in i.vendor.lower() for a in aliases)], f"vendor {key}"
    parts = key.split(":")
    if len(parts) == 2 and all(part.strip().isdigit() for part in parts):
        index = f"{int(parts[0])}:{int(parts[1])}"
        return [i for i in infos if i.index == index], f"platform:device index {index}"
    return [i for i in infos if key in i.name.lower()], f"a device name containing {spec.strip()!r}"


def choose(spec: str | None, infos: list[DeviceInfo], environ: dict | None = None) -> tuple[DeviceInfo, str]:
    """The device a spec names among `infos`, and a sentence saying why it was chosen.

    spec None reads $CLNET_DEVICE; when that is unset too, the best GPU of any platform,
    else the best other device. Several matches: the best of them (see `best`). "fastest":
    the device recorded by `fastest.remember` (as `clnet bench` does), else the default choice.
    A device that failed its self-check (`clnet devices --check`) is left out of every choice
    among several; named alone, it is chosen with a warning saying what failed.
    """
    environ = os.environ if environ is None else environ
    verdicts = checks.load()
    sound = [i for i in infos if checks.failures(i, verdicts) is None]
    source = "spec"
    if spec is None:
        env_spec = environ.get(DEVICE_ENV, "").strip()
        if env_spec:
            spec, source = env_spec, f"${DEVICE_ENV}"
        else:
            if not sound:
                raise DeviceNotFoundError("Every OpenCL device failed its self-check (`clnet devices` shows what "
                                          "failed); name one to use it anyway.\n" + format_table(infos))
            left_out = f" ({len(infos) - len(sound)} failed their self-check)" if len(sound) < len(infos) else ""
            gpus = [i for i in sound if i.type == "GPU"]
            if gpus:
                chosen = best(gpus)
                return chosen, (f"no spec given: the best of {len(gpus)} GPU(s) by discrete, compute units x "
                                f"clock{left_out}")
            chosen = best(sound)
            return chosen, f"no spec given and no GPU found: the best {chosen.type} device{left_out}"
    if not isinstance(spec, str) or not spec.strip():
        raise DeviceNotFoundError(f"A device spec must be a non-empty string, got {spec!r}. "
                                  f"Known specs: {', '.join(KNOWN_SPECS)}.")
    if spec.strip().lower() == "fastest":
        found = fastest.recall(sound)
        if found is not None:
            return found
        chosen, reason = choose(None, infos, environ={})
        return chosen, f"'fastest' without a usable benchmark, so {reason}"
    matches, meaning = _matches(spec, infos)
    if not matches:
        raise DeviceNotFoundError(
            f"No OpenCL device matches {source} {spec!r} (read as {meaning}). "
            f"Known specs: {', '.join(KNOWN_SPECS)}. The devices of this machine:\n{format_table(infos)}")
    passing = [i for i in matches if checks.failures(i, verdicts) is None]
    chosen = best(passing or matches)
    count = f"the best of {len(matches)} matches" if len(matches) > 1 else "the only match"
    failed = checks.failures(chosen, verdicts)
    if failed is not None:
        warnings.warn(f"clnet: {chosen.name} ({chosen.platform}) failed its self-check: {'; '.join(failed)}. "
                      f"Its results may be wrong; `clnet devices --check` checks it again.", stacklevel=3)
        count += ", which failed its self-check"
    elif len(passing) < len(matches):
        count += f" that passed their self-check ({len(matches) - len(passing)} failed)"
    return chosen, f"{source} {spec!r} means {meaning}: {count}"
