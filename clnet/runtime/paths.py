"""Where clnet keeps files between runs: $CLNET_CACHE_DIR, else the platform's user cache folder
(platformdirs, which pyopencl already depends on: ~/.cache/clnet on Linux)."""

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """The folder for clnet's caches (created on first use)."""
    explicit = os.environ.get("CLNET_CACHE_DIR")
    path = Path(explicit) if explicit else Path(platformdirs.user_cache_dir("clnet", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
