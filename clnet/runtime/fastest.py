"""The record of this machine's fastest device, which `Context("fastest")` reads.

This layer owns the record's format; whoever measures devices (`clnet bench`) calls `remember`.
The file is $CLNET_CACHE_DIR/fastest.json: {"format", "key", "name", "date", "source"}.
"""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from . import files
from .paths import cache_dir

if TYPE_CHECKING:
    from .device import DeviceInfo

FORMAT = 1
FILE_NAME = "fastest.json"


def record_path() -> Path:
    return cache_dir() / FILE_NAME


def remember(info: DeviceInfo, source: str) -> Path:
    """Record `info` as this machine's fastest device, found by `source` (say "clnet bench")."""
    record = {"format": FORMAT, "key": info.key, "name": info.name, "source": source,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    text = json.dumps(record, indent=1) + "\n"
    return files.write_atomic(record_path(), lambda f: f.write(text.encode()))  # a temporary of this process's own


def recall(infos: list[DeviceInfo]) -> tuple[DeviceInfo, str] | None:
    """The recorded fastest device among `infos` and why, or None (with a warning) when there is
    no usable record."""
    path = record_path()
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError(f"not a record of format {FORMAT}")
        key, date, source = record["key"], str(record["date"]), str(record["source"])
        if not isinstance(key, str):
            raise TypeError(f"'key' is {key!r}")
    except FileNotFoundError:
        problem = f"there is no record of the fastest device ({path}); run `clnet bench` to make one"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problem = f"the record {path} is unreadable ({type(exc).__name__}: {exc}); run `clnet bench` again"
    else:
        for info in infos:
            if info.key == key:
                return info, f"'fastest': the best device of the last {source} ({date[:10]})"
        problem = f"the recorded fastest device ({key}) is not on this machine now"
    warnings.warn(f"clnet: Context('fastest'): {problem}; using the default choice instead.", stacklevel=5)
    return None
