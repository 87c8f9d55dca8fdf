"""The tuning file, $CLNET_CACHE_DIR/tuning.json: what `tune` found per device and dtype, kept
by platform, device name and driver version, and applied to every new Context on that device.
A corrupt or stale file is ignored with a warning; CLNET_TUNING=off ignores it altogether."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..ops import blas
from ..ops.local_gemm import LocalTiles
from ..ops.tiled_gemm import TileParams
from ..runtime import files
from ..runtime.device import DeviceInfo
from ..runtime.paths import cache_dir

FORMAT = 1
FILE_NAME = "tuning.json"
TUNING_ENV = "CLNET_TUNING"  # "off": new Contexts ignore the saved tuning


def tuning_path() -> Path:
    return cache_dir() / FILE_NAME


def _precision(dtype) -> int:
    return 32 if np.dtype(dtype) == np.float32 else 64


def apply_clblast(device, dtype, overrides: dict) -> None:
    """Override CLBlast's kernel parameters for this device and dtype (for the rest of the process)."""
    if not blas.HAVE_CLBLAST:
        raise RuntimeError(blas.NO_CLBLAST)
    for kernel, params in overrides.items():
        blas.pyclblast.override_parameters(device, kernel, _precision(dtype), params)
    if overrides:
        blas.clear_clblast_cache()


def load() -> dict:
    """The tuning file's device entries ({} when there is none, or it is corrupt: warned)."""
    path = tuning_path()
    if not path.exists():
        return {}
    try:
        content = json.loads(path.read_text())
        if not isinstance(content, dict) or content.get("format") != FORMAT or not isinstance(
                content.get("devices"), dict):
            raise ValueError(f"not a clnet tuning file of format {FORMAT}")
        return content["devices"]
    except (OSError, ValueError) as exc:
        warnings.warn(f"clnet: ignoring the tuning file {path}: {exc}. Run `clnet tune` to make a new one.",
                      stacklevel=3)
        return {}


def store(info: DeviceInfo, dtype, entry: dict) -> None:
    """Write `entry` for this device and dtype into the tuning file (atomically)."""
    path = tuning_path()
    with files.locked(path):  # read, change and write: another process's save in between would be lost
        devices = load() if path.exists() else {}
        found = devices.get(info.key)
        devices[info.key] = {**(found if isinstance(found, dict) else {}), np.dtype(dtype).name: entry}
        text = json.dumps({"format": FORMAT, "devices": devices}, indent=1) + "\n"
        files.write_atomic(path, lambda f: f.write(text.encode()))  # a temporary file of this process's own


def tuned_dtypes(info: DeviceInfo, devices: dict | None = None) -> list[str]:
    """The dtypes the tuning file holds for this device."""
    entries = (load() if devices is None else devices).get(info.key, {})
    return sorted(entries)


def checked(entry) -> dict:
    """A tuning entry whose every value the kernels can take, or ValueError saying which is not
    (a file that parses may still hold anything: a hand edit, another version's values)."""
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        raise ValueError(f"not an entry of format {FORMAT}")
    backend = entry.get("backend")
    if not isinstance(backend, dict) or any(backend.get(size) not in blas.BACKENDS for size in ("small", "large")):
        raise ValueError(f"backend {backend!r}: needs 'small' and 'large', each one of {', '.join(blas.BACKENDS)}")
    if not isinstance(entry.get("clnet"), dict):
        raise ValueError(f"clnet tiles {entry.get('clnet')!r}: need a mapping")
    TileParams(**entry["clnet"]).check()
    if "local" in entry:
        LocalTiles(**entry["local"]).check()
    overrides = entry.get("clblast", {})
    if not isinstance(overrides, dict) or not all(
            isinstance(name, str) and isinstance(params, dict)
            and all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1024
                    for k, v in params.items()) for name, params in overrides.items()):
        raise ValueError("CLBlast overrides: need {kernel: {parameter: whole number 0..1024}}")
    return entry


def apply(ctx, dtype, entry: dict) -> None:
    """Make ctx use a tuning entry (checked first): backends per class, tile parameters,
    CLBlast's overrides."""
    entry = checked(entry)
    settings = blas.settings(ctx, dtype)
    settings.small, settings.large = entry["backend"]["small"], entry["backend"]["large"]
    settings.tiles = TileParams(**entry["clnet"])
    settings.local = LocalTiles(**entry["local"]) if "local" in entry else None
    settings.tuned = True
    if "clblast" in entry["backend"].values():
        apply_clblast(ctx.device, dtype, entry["clblast"])


def apply_saved(ctx) -> None:
    """On opening a Context: apply the saved tuning of its device, if there is a valid one."""
    if os.environ.get(TUNING_ENV, "").lower() == "off":
        return
    devices = load()
    entries = devices.get(ctx.info.key)
    if entries is not None and not isinstance(entries, dict):
        warnings.warn(f"clnet: ignoring the GEMM tuning of {ctx.info.name} in {tuning_path()}: not a mapping of "
                      "dtypes to entries; run `clnet tune` to make a new one", stacklevel=3)
        return
    if entries is None:
        stale = [key for key in devices if key.rsplit("|", 1)[0] == ctx.info.key.rsplit("|", 1)[0]]
        if stale:
            warnings.warn(f"clnet: ignoring GEMM tuning for {ctx.info.name} made with another driver "
                          f"({stale[0].rsplit('|', 1)[1]}, now {ctx.info.driver_version}); run `clnet tune` again.",
                          stacklevel=3)
        return
    for dtype, entry in entries.items():
        if dtype == "float64" and not ctx.info.fp64:
            continue
        try:
            apply(ctx, dtype, entry)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            ctx.settings.pop(("gemm", dtype), None)
            warnings.warn(f"clnet: ignoring the {dtype} GEMM tuning of {ctx.info.name} in {tuning_path()}: {exc}; "
                          "run `clnet tune` to make a new one", stacklevel=3)
