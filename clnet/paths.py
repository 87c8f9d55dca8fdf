"""Where clnet keeps files between runs: $CLNET_CACHE_DIR, else $XDG_CACHE_HOME/clnet."""

import os
from pathlib import Path

BENCH_FILE = "bench.json"  # the last `clnet bench` of this machine: Context("fastest") reads it


def cache_dir() -> Path:
    """The folder for clnet's caches (created on first use)."""
    explicit = os.environ.get("CLNET_CACHE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(xdg) / "clnet"
    path.mkdir(parents=True, exist_ok=True)
    return path
