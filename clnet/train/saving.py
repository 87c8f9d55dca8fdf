"""Saving a network to one .npz file and loading it back, on any device.

The file holds a JSON description (format, dtype, the shape of a sample, and each layer's
registered type and config, clnet.nn.registry) and one array per parameter and state array,
named as Network.named_arrays ("layer_<i>.<name>"); a checkpoint (clnet.train.checkpoints)
adds entries of its own, which `read` ignores. Files of the first format (fully-connected
layers, "weights_<i>" and "bias_<i>") still load. A save is atomic (clnet.runtime.files: a crash
or a full disk leaves the previous file whole, and the replaced file's permissions are kept).
`read` takes a name as `save` does (`.npz` added to a name without a suffix) and checks all of it
before anything is made, so a truncated, foreign or inconsistent file raises ValueError and never
gives a half-loaded network.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..nn import registry
from ..nn.network import Network, place
from ..nn.protocol import Layer
from ..runtime import files

FORMAT = 2  # 1: fully-connected layers only (read still)
DESCRIPTION = "clnet_network"
SUFFIX = ".npz"
EXTRA_PREFIXES = ("checkpoint", "optimizer_state_")  # entries a checkpoint adds to a network file


def file_path(path: str | os.PathLike, suffix: str = SUFFIX) -> Path:
    """The file a save to `path` writes: `suffix` (`.npz`; ONNX export: `.onnx`) is added when the
    name has none. A folder, or a path whose folder does not exist, raises before anything is
    written."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; save to a file in it, such as {path / ('network' + suffix)}")
    if not path.suffix:
        path = path.with_name(path.name + suffix)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; save to a file in it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: the folder {path.parent} does not exist")
    return path


def write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` as an .npz file at `path`, atomically (clnet.runtime.files)."""
    return files.write_atomic(path, lambda f: np.savez(f, **arrays))


def find(path: str | os.PathLike) -> Path:
    """The file a load of `path` reads, by save's rule: `path` itself, or with `.npz` added when
    the name has no suffix and only that one exists. FileNotFoundError naming what was tried."""
    path = Path(path)
    if path.exists() or path.suffix:
        return path
    with_suffix = path.with_name(path.name + SUFFIX)
    if with_suffix.exists():
        return with_suffix
    raise FileNotFoundError(f"no network file {path} (nor {with_suffix}, which a save to {path} writes)")


def network_arrays(net: Network) -> dict[str, np.ndarray]:
    """The entries of a network file: the description and every parameter and state array."""
    arrays = {DESCRIPTION: np.array(json.dumps({"format": FORMAT, **net.description()}))}
    arrays.update(net.host_arrays())  # one transfer per buffer
    return arrays


def save(net: Network, path: str | os.PathLike) -> Path:
    """Write `net` to `path` atomically (`.npz` added when the name has no suffix); returns the
    path written."""
    return write_atomic(file_path(path), network_arrays(net))


def read_entries(path) -> tuple[dict, dict]:
    """The description and every array of the .npz file at `path` (ValueError if unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc})") from exc
    if DESCRIPTION not in arrays:
        raise ValueError(f"{path} is not a clnet network file: it has no {DESCRIPTION!r} entry")
    try:
        description = json.loads(str(arrays.pop(DESCRIPTION)))
    except ValueError as exc:
        raise ValueError(f"{path}: the network description is not valid JSON ({exc})") from exc
    return description, arrays


def _format_1(description: dict, arrays: dict) -> tuple[dict, dict]:
    """A file of clnet's first format (fully-connected layers only, arrays weights_<i> and
    bias_<i>) in the terms of the current one."""
    layers = [{"type": "FullyConnected", "config": {"outputs": la["outputs"], "activation": la["activation"],
                                                    "dropout": la.get("dropout", 0.0)}}
              for la in description["layers"]]
    renamed = {}
    for name, array in arrays.items():
        kind, _, index = name.rpartition("_")
        renamed[f"layer_{index}.{kind}" if kind in ("weights", "bias") and index.isdigit() else name] = array
    return {"format": FORMAT, "dtype": description["dtype"], "input_shape": [description["inputs"]],
            "layers": layers}, renamed


def _check(path, description: dict, arrays: dict) -> tuple[tuple[int, ...], list[Layer], dict]:
    if not isinstance(description, dict) or description.get("format") not in (1, FORMAT):
        raise ValueError(f"{path}: unknown network file format {description.get('format')!r} (expected {FORMAT})")
    try:
        if description["format"] == 1:
            description, arrays = _format_1(description, arrays)
        input_shape = tuple(int(n) for n in description["input_shape"])
        specs = [registry.from_description(la) for la in description["layers"]]
        np.dtype(description["dtype"])
        placements = place(input_shape, specs)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: incomplete network description ({type(exc).__name__}: {exc})") from exc
    expected = {f"layer_{i}.{p.name}": p.shape for i, placed in enumerate(placements) for p in placed.parameters}
    if set(arrays) != set(expected):
        raise ValueError(f"{path}: expected arrays {sorted(expected)}, found {sorted(arrays)}")
    for name, shape in expected.items():
        if arrays[name].shape != shape or arrays[name].dtype.kind != "f":
            raise ValueError(f"{path}: {name} must be a float array of shape {shape}, "
                             f"got {arrays[name].dtype} {arrays[name].shape}")
    return input_shape, specs, arrays


def read(path) -> tuple[tuple[int, ...], list[Layer], str, dict[str, np.ndarray]]:
    """(sample shape, layers, dtype name, arrays by name as Network.named_arrays) of the network
    file at `path`, all checked: ValueError for a truncated, foreign or inconsistent file."""
    path = find(path)
    description, arrays = read_entries(path)
    arrays = {name: a for name, a in arrays.items() if not name.startswith(EXTRA_PREFIXES)}
    input_shape, specs, arrays = _check(path, description, arrays)
    return input_shape, specs, description["dtype"], arrays
