"""Checkpoints of `fit`: the network file (clnet.train.saving: every layer's config, parameters and
state) plus what a resumed run needs to go on exactly where it stopped: the epoch, the history,
the optimizer's kind, step count and state buffers, and the position of the shuffling random
stream. `clnet.load` reads a checkpoint
as the network alone. Written atomically, like every save."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..nn.network import Network
from . import saving
from .optimizers import Optimizer, from_record

FORMAT = 1
ENTRY = "checkpoint"  # the JSON entry; the optimizer's buffers are optimizer_state_<i>


def write(path: Path, net: Network, optimizer: Optimizer, shuffling: np.random.Generator, epoch: int,
          history: list[float], run: dict, extra: dict | None = None, best: np.ndarray | None = None,
          settings: dict | None = None) -> Path:
    """Save the state after `epoch` epochs; `run` holds the settings a resume must share
    (samples, batch size, cost), `settings` the hyper-parameters it must share (the optimizer's,
    the schedule, the seed); `extra` more of fit's state (JSON), `best` the parameter buffer of
    the best epoch so far (early stopping)."""
    arrays = saving.network_arrays(net)
    record = {"format": FORMAT, "epoch": epoch, "history": list(history), "run": run, "settings": settings or {},
              "optimizer": {"kind": optimizer.recorded_kind(), "steps": optimizer.steps, "config": optimizer.config()},
              "shuffling": shuffling.bit_generator.state, "extra": extra or {}}
    if best is not None:
        arrays["checkpoint_best"] = best
    arrays[ENTRY] = np.array(json.dumps(record))
    for i, state in enumerate(optimizer.host_state(net.parameter_buffer)):
        arrays[f"optimizer_state_{i}"] = state
    return saving.write_atomic(path, arrays)


def restore(path: Path, net: Network, optimizer: Optimizer, shuffling: np.random.Generator,
            run: dict, settings: dict | None = None) -> tuple[int, list[float], dict, np.ndarray | None]:
    """Load the checkpoint at `path` into net, optimizer and the shuffling stream; returns
    (epochs done, history, extra, best parameters or None). ValueError when it belongs to
    another network or run, or was made with other hyper-parameters (`settings`: those of this
    run that must be the same, naming each that differs)."""
    input_shape, layers, dtype, parameters = saving.read(path)
    if (input_shape, layers, dtype) != (net.input_shape, net.specs, net.dtype.name):
        theirs = (input_shape, layers, dtype)
        raise ValueError(f"the checkpoint {path} holds another network ({theirs}) than this one "
                         f"({(net.input_shape, net.specs, net.dtype.name)})")
    size = (net.parameter_buffer.flat.size,)  # each optimizer state buffer's, and the best parameters'
    with saving.Entries(path) as entries:  # every entry read here, each after its header was checked
        if ENTRY not in entries:
            raise ValueError(f"{path} is a network file, not a checkpoint of fit: it cannot be resumed")
        record = entries.json(ENTRY)
        states = [entries.read(f"optimizer_state_{i}", size)
                  for i in range(sum(n.startswith("optimizer_state_") for n in entries.headers))]
        best = entries.read("checkpoint_best", size) if "checkpoint_best" in entries else None
    try:
        epoch, history, kind = int(record["epoch"]), [float(c) for c in record["history"]], record["optimizer"]["kind"]
        steps, saved_run, shuffle_state = int(record["optimizer"]["steps"]), record["run"], record["shuffling"]
        extra = dict(record.get("extra", {}))
        if record["format"] != FORMAT:
            raise ValueError(f"format {record['format']}, expected {FORMAT}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable checkpoint record ({type(exc).__name__}: {exc})") from exc
    if kind != optimizer.kind:
        raise ValueError(f"the checkpoint {path} was made with {kind}; resume it with clnet.{kind}, "
                         f"not {optimizer.kind}")
    if saved_run != run:
        raise ValueError(f"the checkpoint {path} was made with {saved_run}; resume it with the same data size, "
                         f"batch_size and cost (now {run})")
    _check_settings(path, record.get("settings", {}), settings or {})
    optimizer.restore_state(net.parameter_buffer, steps, states)  # checks the buffers first
    net.set_arrays(parameters)
    shuffling.bit_generator.state = shuffle_state
    return epoch, history, extra, best


def saved_optimizer(path: Path) -> Optimizer:
    """A fresh optimizer of the registered type and config that the checkpoint at `path` records
    (what a resume uses when fit is given none)."""
    with saving.Entries(path) as entries:
        if ENTRY not in entries:
            raise ValueError(f"{path} is a network file, not a checkpoint of fit: it cannot be resumed")
        record = entries.json(ENTRY)
    try:
        kind, config = record["optimizer"]["kind"], record["optimizer"].get("config")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable checkpoint record ({type(exc).__name__}: {exc})") from exc
    try:
        return from_record(kind, config)
    except TypeError as exc:  # a config the type's __init__ does not take
        raise ValueError(f"{path}: the recorded {kind} config {config} does not make one ({exc})") from exc


def _check_settings(path: Path, saved: dict, now: dict) -> None:
    """Refuse a resume whose hyper-parameters differ from the checkpoint's, naming them."""
    changed = sorted(key for key in saved.keys() & now.keys() if saved[key] != now[key])
    if changed:
        then = ", ".join(f"{key}={saved[key]}" for key in changed)
        this = ", ".join(f"{key}={now[key]}" for key in changed)
        raise ValueError(f"the checkpoint {path} was made with {then}; this run has {this}. Resume with the same "
                         "settings, or start afresh (resume=False, or another checkpoint file)")
