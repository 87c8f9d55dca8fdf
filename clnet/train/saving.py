"""Saving a network to one .npz file and loading it back, on any device.

The file holds a JSON description (format, dtype, inputs, layers) and one array per weight and
bias; a checkpoint (clnet.train.checkpoint) adds entries of its own, which `read` ignores. A
save is atomic: the file is written beside its destination, flushed to the disk and then
renamed over it, so a crash or a full disk leaves the previous file whole. `read` checks all
of it before anything is made, so a truncated, foreign or inconsistent file raises ValueError
and never gives a half-loaded network.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..nn.layers import FullyConnected
from ..nn.network import Network

FORMAT = 1
DESCRIPTION = "clnet_network"
SUFFIX = ".npz"
EXTRA_PREFIXES = ("checkpoint", "optimizer_state_")  # entries a checkpoint adds to a network file


def file_path(path: str | os.PathLike) -> Path:
    """The file a save to `path` writes: `.npz` is added when the name has no suffix. A folder,
    or a path whose folder does not exist, raises before anything is written."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; save to a file in it, such as {path / ('network' + SUFFIX)}")
    if not path.suffix:
        path = path.with_name(path.name + SUFFIX)
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; save to a file in it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: the folder {path.parent} does not exist")
    return path


def write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` as an .npz file at `path`, atomically (see write_file_atomic)."""
    return write_file_atomic(path, lambda f: np.savez(f, **arrays))


def write_file_atomic(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(file)` on a temporary file in `path`'s folder, flush and fsync it, then rename
    it over `path`. On any failure `path` is untouched and the temporary file is removed."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


def network_arrays(net: Network) -> dict[str, np.ndarray]:
    """The entries of a network file: the description and every weight and bias."""
    description = {
        "format": FORMAT,
        "dtype": net.dtype.name,
        "inputs": net.inputs,
        "layers": [{"outputs": layer.outputs, "activation": layer.activation, "dropout": layer.dropout}
                   for layer in net.layers],
    }
    arrays = {DESCRIPTION: np.array(json.dumps(description))}
    host = net.parameter_buffer.get()  # one transfer
    for i in range(len(net.layers)):
        arrays[f"weights_{i}"], arrays[f"bias_{i}"] = host[2 * i], host[2 * i + 1]
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


def _check(path, description: dict, arrays: dict) -> list[tuple[int, str, float]]:
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown network file format {description.get('format')!r} (expected {FORMAT})")
    try:
        inputs = int(description["inputs"])
        layers = [(int(la["outputs"]), str(la["activation"]), float(la.get("dropout", 0.0)))
                  for la in description["layers"]]
        np.dtype(description["dtype"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: incomplete network description ({type(exc).__name__}: {exc})") from exc
    widths = [inputs] + [outputs for outputs, _, _ in layers]
    expected = {}
    for i, (outputs, inputs_i) in enumerate(zip(widths[1:], widths)):
        expected[f"weights_{i}"], expected[f"bias_{i}"] = (outputs, inputs_i), (outputs,)
    if set(arrays) != set(expected):
        raise ValueError(f"{path}: expected arrays {sorted(expected)}, found {sorted(arrays)}")
    for name, shape in expected.items():
        if arrays[name].shape != shape or arrays[name].dtype.kind != "f":
            raise ValueError(f"{path}: {name} must be a float array of shape {shape}, "
                             f"got {arrays[name].dtype} {arrays[name].shape}")
    return layers


def read(path) -> tuple[int, list[FullyConnected], str, list[np.ndarray]]:
    """(inputs, layers, dtype name, [W0, b0, W1, b1, ...]) of the network file at `path`,
    all checked: ValueError for a truncated, foreign or inconsistent file."""
    path = Path(path)
    description, arrays = read_entries(path)
    arrays = {name: a for name, a in arrays.items() if not name.startswith(EXTRA_PREFIXES)}
    layers = _check(path, description, arrays)
    parameters = [arrays[f"{kind}_{i}"] for i in range(len(layers)) for kind in ("weights", "bias")]
    return (int(description["inputs"]), [FullyConnected(o, a, dropout=d) for o, a, d in layers], description["dtype"],
            parameters)
