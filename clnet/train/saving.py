"""Saving a network to one .npz file and loading it back, on any device.

The file holds a JSON description (format, clnet version, dtype, inputs, layers) and one array
per weight and bias. `load` checks all of it before it makes anything, so a truncated, foreign or
inconsistent file raises ValueError and never gives a half-loaded network.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..nn.layers import FullyConnected
from ..nn.network import Network

FORMAT = 1
DESCRIPTION = "clnet_network"


def save(net: Network, path) -> None:
    """Write `net` to `path` (.npz; numpy adds the suffix if it is missing)."""
    description = {
        "format": FORMAT,
        "dtype": net.dtype.name,
        "inputs": net.inputs,
        "layers": [{"outputs": layer.outputs, "activation": layer.activation} for layer in net.layers],
    }
    arrays = {DESCRIPTION: np.array(json.dumps(description))}
    for i, layer in enumerate(net.layers):
        arrays[f"weights_{i}"] = layer.weights.get()
        arrays[f"bias_{i}"] = layer.bias.get()
    np.savez(path, **arrays)


def _read(path) -> tuple[dict, dict]:
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


def _check(path, description: dict, arrays: dict) -> list[tuple[int, str]]:
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown network file format {description.get('format')!r} (expected {FORMAT})")
    try:
        inputs = int(description["inputs"])
        layers = [(int(la["outputs"]), str(la["activation"])) for la in description["layers"]]
        np.dtype(description["dtype"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: incomplete network description ({type(exc).__name__}: {exc})") from exc
    widths = [inputs] + [outputs for outputs, _ in layers]
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
    description, arrays = _read(path)
    layers = _check(path, description, arrays)
    parameters = [arrays[f"{kind}_{i}"] for i in range(len(layers)) for kind in ("weights", "bias")]
    return int(description["inputs"]), [FullyConnected(o, a) for o, a in layers], description["dtype"], parameters
