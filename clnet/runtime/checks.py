"""The verdicts of the device self-check (clnet.app.selfcheck, `clnet devices --check`), kept in
the cache folder per device and driver version: a driver update makes a device unchecked again.

Device choice reads them (runtime/device.choose): a device whose check failed is never the
default, and naming it explicitly warns with what failed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from . import files
from .paths import cache_dir

FILE = "device-checks.json"


def path() -> Path:
    return cache_dir() / FILE


def load() -> dict[str, dict]:
    """Every kept verdict by device key ({} when there is no file, or an unreadable one)."""
    try:
        found = json.loads(path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        warnings.warn(f"clnet: ignoring the device checks in {path()}: {exc}", stacklevel=2)
        return {}
    if not isinstance(found, dict):
        warnings.warn(f"clnet: ignoring the device checks in {path()}: not a mapping of devices to verdicts",
                      stacklevel=2)
        return {}
    valid = {key: verdict for key, verdict in found.items() if isinstance(verdict, dict) and isinstance(
        verdict.get("passed", True), bool) and isinstance(verdict.get("failed") or [], list)}
    if len(valid) < len(found):
        warnings.warn(f"clnet: ignoring {len(found) - len(valid)} malformed verdict(s) in {path()}", stacklevel=2)
    return valid


def store(info, verdict: dict) -> None:
    """Keep `verdict` ({"passed": bool, "failed": [what failed, in words], ...}) for this device
    and driver, atomically."""
    with files.locked(path()):  # read, change and write: another process's save in between would be lost
        verdicts = load()
        verdicts[info.key] = verdict
        text = json.dumps(verdicts, indent=1) + "\n"
        files.write_atomic(path(), lambda f: f.write(text.encode()))


def failures(info, verdicts: dict | None = None) -> list[str] | None:
    """What failed in this device's last check, or None when it passed or was never checked."""
    found = (load() if verdicts is None else verdicts).get(info.key)
    if not isinstance(found, dict) or found.get("passed", True):
        return None
    return list(found.get("failed") or ["the self-check"])


def describe(info, verdicts: dict | None = None) -> str:
    """The verdict in a table cell: "passed", "FAILED: ...", or "-" (never checked)."""
    found = (load() if verdicts is None else verdicts).get(info.key)
    if not isinstance(found, dict):
        return "-"
    failed = failures(info, verdicts)
    return "passed" if failed is None else "FAILED: " + "; ".join(failed)
