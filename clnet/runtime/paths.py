"""Where clnet keeps files between runs: $CLNET_CACHE_DIR, else the platform's user cache folder
(platformdirs, which pyopencl already depends on: ~/.cache/clnet on Linux). A folder in which no
file can be made (a read-only HOME, a file where the folder should be) is replaced, with one
warning, by a folder of this user's in the temporary directory, so that nothing else fails.

PoCL keeps its compiled kernels under the same user cache folder, and reports no devices at all
where it cannot write there: `point_pocl_at_a_usable_cache` (run by clnet's import, before the
first platform query) gives it a usable folder in that case."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import platformdirs

log = logging.getLogger("clnet")
_usable: dict[Path, Path] = {}  # a folder asked for: the one used (itself or the fallback), checked once


def writable(folder: Path) -> OSError | None:
    """None when files can be made in `folder` (made if missing), else the error. Tried, not
    judged from the permissions, which root ignores and a read-only file system overrides."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc


def fallback_dir(name: str) -> Path:
    """A usable folder of this user's in the temporary directory (`clnet-<name>-<uid>`, else a
    new one when another user holds that name)."""
    user = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    folder = Path(tempfile.gettempdir()) / f"clnet-{name}-{user}"
    return folder if writable(folder) is None else Path(tempfile.mkdtemp(prefix=f"clnet-{name}-"))


def cache_dir() -> Path:
    """The folder for clnet's caches (created on first use; see the module's docstring)."""
    explicit = os.environ.get("CLNET_CACHE_DIR")
    path = Path(explicit) if explicit else Path(platformdirs.user_cache_dir("clnet", appauthor=False))
    found = _usable.get(path)
    if found is None:
        problem = writable(path)
        found = path if problem is None else fallback_dir("cache")
        if problem is not None:
            warnings.warn(f"clnet: cannot make files in the cache folder {path} ({problem.strerror or problem}); "
                          f"using {found} instead (set CLNET_CACHE_DIR to a writable folder)", stacklevel=2)
        _usable[path] = found
    return found


def point_pocl_at_a_usable_cache(environ: dict | None = None) -> Path | None:
    """Set POCL_CACHE_DIR to a usable folder when it is unset and PoCL's own (under
    $XDG_CACHE_HOME or ~/.cache) cannot be written; returns the folder set, or None."""
    environ = os.environ if environ is None else environ
    if environ.get("POCL_CACHE_DIR"):
        return None
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    # PoCL's folder where it exists, else the folder PoCL would make it in (nothing of PoCL's made here)
    problem = writable(base / "pocl" if (base / "pocl").exists() else base)
    if problem is None:
        return None
    folder = fallback_dir("pocl-cache")
    environ["POCL_CACHE_DIR"] = str(folder)
    log.info("PoCL's kernel cache under %s is not writable (%s): POCL_CACHE_DIR=%s", base, problem, folder)
    return folder


def driver_caches(environ: dict | None = None) -> dict[str, Path]:
    """The kernel caches of the drivers and of pyopencl that exist on this machine, by owner: a
    damaged file there (a truncated binary) crashes or confuses every later build of the same
    kernel, whatever clnet does; `clnet cache --clear` empties them."""
    environ = os.environ if environ is None else environ
    home_cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    found = {"PoCL": Path(environ.get("POCL_CACHE_DIR") or home_cache / "pocl" / "kcache"),
             "pyopencl": Path(platformdirs.user_cache_dir("pyopencl", "pyopencl")) /
             f"pyopencl-compiler-cache-v2-py{'.'.join(str(i) for i in sys.version_info)}",
             "NVIDIA": Path(environ.get("CUDA_CACHE_PATH") or Path.home() / ".nv" / "ComputeCache")}
    return {owner: path for owner, path in found.items() if path.is_dir()}


def listed_driver_caches() -> str:
    """The kernel caches of this machine in words ("PoCL: /path; pyopencl: /path"), for the errors
    that a damaged cached binary may cause."""
    return "; ".join(f"{owner}: {path}" for owner, path in driver_caches().items()) or "no kernel cache found"
