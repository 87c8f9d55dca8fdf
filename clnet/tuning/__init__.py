"""Tuning GEMM per device: `clnet tune` measures clnet's tiled kernel and CLBlast (search), and
the tuning file keeps the winner (store). Importing this package makes every new Context apply
its device's saved tuning."""

from ..runtime.context import on_open
from .search import tune
from .store import apply_saved, load, tuned_dtypes, tuning_path

on_open(apply_saved)

__all__ = ["load", "tune", "tuned_dtypes", "tuning_path"]
