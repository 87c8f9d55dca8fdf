"""OpenCL drivers that pip installs where the ICD loader does not look, registered for this
process before its first platform query (clnet's import does it).

The loader (ocl-icd: pyopencl's wheel bundles it, Debian ships it) opens the libraries named by
the `.icd` files of one folder, $OCL_ICD_VENDORS when set, else /etc/OpenCL/vendors (pyopencl's
copy also reads its own folder, which is how pip's PoCL is found). Intel's CPU runtime from pip
(`intel-opencl-rt`, the `intel` extra) ships an `.icd` file whose path is a placeholder of its
build, so nothing finds it. When its library is installed and no `.icd` file the loader reads
names it, clnet makes a folder of `.icd` files in its cache: copies of those the loader would
have read (the system's, or the folder or file of a user's own $OCL_ICD_VENDORS) and one naming
Intel's library by absolute path, and points $OCL_ICD_VENDORS there. Child processes (MPI
ranks, the tuning worker) inherit it. CLNET_REGISTER_DRIVERS=0 turns this off.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

from .paths import cache_dir

SYSTEM_VENDORS = Path("/etc/OpenCL/vendors")
SWITCH_ENV = "CLNET_REGISTER_DRIVERS"
# (distribution, library, platform name): the pip-installed drivers clnet registers
PIP_DRIVERS = (("intel-opencl-rt", "libintelocl.so", "Intel(R) OpenCL"),)

registered: dict[str, Path] = {}  # platform name: library, registered by this process (`devices` checks them)


def installed_library(distribution: str, library: str) -> Path | None:
    """The absolute path of `library` in the installed `distribution`, or None."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == library:
            path = Path(file.locate()).resolve()
            if path.exists():
                return path
    return None


def loader_icds(environ: dict) -> dict[str, str]:
    """{file name: contents} of the `.icd` files the loader reads under `environ`."""
    setting = environ.get("OCL_ICD_VENDORS", "").strip()
    source = Path(setting) if setting else SYSTEM_VENDORS
    if source.is_dir():
        return {icd.name: icd.read_text() for icd in sorted(source.glob("*.icd")) if icd.is_file()}
    if source.suffix == ".icd" and source.is_file():
        return {source.name: source.read_text()}
    if setting:  # the loader takes any other value as the name of one library
        return {"user.icd": setting + "\n"}
    return {}


def names(icds: dict[str, str], library: str) -> bool:
    """Whether one of the `.icd` files names `library` (by absolute path or by its file name)."""
    return any(Path(line.strip()).name.startswith(library)
               for text in icds.values() for line in text.splitlines()[:1])


def vendors_folder(icds: dict[str, str]) -> Path:
    """A folder in the cache holding exactly `icds`; made once (atomically) per distinct content."""
    digest = hashlib.sha256(repr(sorted(icds.items())).encode()).hexdigest()[:16]
    root = cache_dir() / "opencl-vendors"
    folder = root / digest
    if not folder.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=root))
        for name, text in icds.items():
            (building / name).write_text(text)
        try:
            building.rename(folder)
        except OSError:  # another process made it first
            shutil.rmtree(building, ignore_errors=True)
    return folder


def register(environ: dict | None = None) -> list[Path]:
    """Register the pip-installed drivers the loader would miss; returns their libraries."""
    environ = os.environ if environ is None else environ
    if environ.get(SWITCH_ENV, "1").strip() == "0":
        return []
    icds = loader_icds(environ)
    missing = {}
    missing: dict[str, Path] = {}
    for distribution, library, platform in PIP_DRIVERS:
        path = installed_library(distribution, library)
        if path is not None and not names(icds, library):
            missing[platform] = path
    if not missing:
        return []
    added = {f"clnet-{Path(path).stem}.icd": f"{path}\n" for path in missing.values()}
    try:
        environ["OCL_ICD_VENDORS"] = str(vendors_folder({**icds, **added}))
    except OSError:  # an unwritable cache: the drivers stay unregistered, as without clnet
        return []
    registered.update(missing)
    return list(missing.values())
