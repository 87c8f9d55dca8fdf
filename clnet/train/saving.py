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
from ..nn.protocol import Layer, Parameter
from ..ops.arrays import check_sample_shape
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
    path written. A network with values that are not finite is refused (`read` would refuse
    the file)."""
    arrays = network_arrays(net)
    bad = [name for name, array in arrays.items() if name != DESCRIPTION and not np.isfinite(array).all()]
    if bad:
        raise ValueError(f"cannot save a network whose {', '.join(bad)} hold values that are not finite (NaN or "
                         "infinite); load the last good file or checkpoint, or train again")
    return write_atomic(file_path(path), arrays)


class Entries:
    """The arrays of an .npz file, each read only after its header (shape and dtype, a few hundred
    bytes) was checked: a crafted file cannot make clnet allocate more than the network it
    describes (a 2 MB file of compressed zeros that claimed 2 GB cost that much memory before).
    ValueError for anything that is not such a file."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as head:  # FileNotFoundError as it is
            magic = head.read(4)
        if magic != b"PK\x03\x04":
            what = "a single numpy array (.npy)" if magic == b"\x93NUM" else "not a zip archive"
            raise ValueError(f"{path} is {what}, not a clnet network file (an .npz archive, as save writes)")
        try:
            self.archive = np.load(path, allow_pickle=False)
            members = set(self.archive.zip.namelist())
            self.headers = {}
            for name in self.archive.files:
                with self.archive.zip.open(name + ".npy" if name + ".npy" in members else name) as member:
                    version = np.lib.format.read_magic(member)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        raise ValueError(f"array {name!r} has .npy format version {version}, not 1.0 or 2.0")
                    shape, _, dtype = read(member)
                self.headers[name] = (tuple(shape), np.dtype(dtype))
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc})") from exc

    def __contains__(self, name: str) -> bool:
        return name in self.headers

    def __enter__(self) -> Entries:
        return self

    def __exit__(self, *exc_info) -> None:
        self.archive.close()

    def read(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Entry `name`, after checking that its header says a float array of `shape`."""
        found, dtype = self.headers[name]
        if found != shape or dtype.kind != "f":
            raise ValueError(f"{self.path}: {name} must be a float array of shape {shape}, got {dtype} {found}")
        try:
            return self.archive[name]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{self.path}: {name} is unreadable ({type(exc).__name__}: {exc})") from exc

    def json(self, name: str):
        """The JSON text that entry `name` holds (a string of at most 64 Mi characters), parsed."""
        shape, dtype = self.headers[name]
        if shape != () or dtype.kind != "U" or dtype.itemsize > 2**28:
            raise ValueError(f"{self.path}: {name} must be one string of JSON text, got {dtype} {shape}")
        try:
            return json.loads(str(self.archive[name]))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{self.path}: {name} is not valid JSON text ({type(exc).__name__}: {exc})") from exc


def _format_1(description: dict, arrays: dict) -> tuple[dict, dict]:
    """A file of clnet's first format (fully-connected layers only, arrays weights_<i> and
    bias_<i>) in the terms of the current one; `arrays`' values go with their new names."""
    layers = [{"type": "FullyConnected", "config": {"outputs": la["outputs"], "activation": la["activation"],
                                                    "dropout": la.get("dropout", 0.0)}}
              for la in description["layers"]]
    renamed = {}
    for name, array in arrays.items():
        kind, _, index = name.rpartition("_")
        renamed[f"layer_{index}.{kind}" if kind in ("weights", "bias") and index.isdigit() else name] = array
    return {"format": FORMAT, "dtype": description["dtype"], "input_shape": [description["inputs"]],
            "layers": layers}, renamed


def _check(path, description, entries: Entries) -> tuple[tuple[int, ...], list[Layer], dict]:
    """The sample shape, the layers and the arrays (read and checked) of a network file."""
    if not isinstance(description, dict) or description.get("format") not in (1, FORMAT):
        found = description.get("format") if isinstance(description, dict) else f"a JSON {type(description).__name__}"
        raise ValueError(f"{path}: unknown network file format {found!r} (expected a JSON object of format "
                         f"{FORMAT})")
    names = {name: name for name in entries.headers if not name.startswith(EXTRA_PREFIXES) and name != DESCRIPTION}
    if description["format"] == 1:
        description, names = _format_1(description, names)
    input_shape, specs, _ = from_description(path, description)
    expected = expected_arrays(input_shape, specs)
    if set(names) != set(expected):
        raise ValueError(f"{path}: expected arrays {sorted(expected)}, found {sorted(names)}")
    arrays = {name: entries.read(names[name], parameter.shape) for name, parameter in expected.items()}  # headers
    check_values(path, expected, arrays)
    return input_shape, specs, arrays


def from_description(path, description: dict) -> tuple[tuple[int, ...], list[Layer], str]:
    """(sample shape, layers, dtype name) of a network's `description()` (of a file or a pickle:
    `path` names it), checked: ValueError for anything incomplete or inconsistent."""
    try:
        input_shape = check_sample_shape(description["input_shape"])
        specs = [registry.from_description(la) for la in description["layers"]]
        np.dtype(description["dtype"])
        place(input_shape, specs)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: incomplete or invalid network description ({type(exc).__name__}: {exc})") from exc
    return input_shape, specs, description["dtype"]


def expected_arrays(input_shape: tuple[int, ...], specs: list[Layer]) -> dict[str, Parameter]:
    """Every array of a network of these layers by name ("layer_<i>.<name>"), as its Parameter."""
    return {f"layer_{i}.{p.name}": p for i, placed in enumerate(place(input_shape, specs)) for p in placed.parameters}


def check_values(path, expected: dict[str, Parameter], arrays: dict[str, np.ndarray]) -> None:
    """ValueError naming the first array of a file or model (`path`) that is not a float array of
    its parameter's shape, holds a value that is not finite, or one below its parameter's minimum."""
    for name, parameter in expected.items():
        array = arrays[name]
        if array.dtype.kind != "f" or array.shape != parameter.shape:
            raise ValueError(f"{path}: {name} must be a float array of shape {parameter.shape}, got {array.dtype} "
                             f"{array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{path}: {name} holds {np.count_nonzero(~np.isfinite(array))} values that are not "
                             "finite (NaN or infinite): a network holds finite numbers")
        if parameter.minimum is not None and array.min(initial=parameter.minimum) < parameter.minimum:
            raise ValueError(f"{path}: {name} must be >= {parameter.minimum} everywhere, got {array.min()}")


def read(path) -> tuple[tuple[int, ...], list[Layer], str, dict[str, np.ndarray]]:
    """(sample shape, layers, dtype name, arrays by name as Network.named_arrays) of the network
    file at `path`, all checked (headers before any array is read; every value finite, a variance
    not negative): ValueError for a truncated, foreign, crafted or inconsistent file."""
    path = find(path)
    with Entries(path) as entries:
        if DESCRIPTION not in entries:
            raise ValueError(f"{path} is not a clnet network file: it has no {DESCRIPTION!r} entry")
        description = entries.json(DESCRIPTION)
        input_shape, specs, arrays = _check(path, description, entries)
    return input_shape, specs, description["dtype"], arrays
