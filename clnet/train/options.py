"""fit's arguments, each checked once, with a message that says what is allowed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyopencl.array as cla

from ..distributed import World
from . import checkpoints, saving, sources
from .loops import check_whole
from .optimizers import Adam, Optimizer
from .schedules import Schedule, as_schedule


@dataclass
class FitOptions:
    """Everything `fit` takes besides the network and the data (see clnet.fit)."""

    cost: str | None = None  # None: targets.default_cost, chosen when the network is known
    epochs: int = 1
    batch_size: int = 32
    optimizer: Optimizer | None = None
    shuffle: bool = True
    seed: int | None = None
    progress: bool = True
    checkpoint: str | Path | None = None
    resume: bool = False
    checkpoint_every: int = 1
    world: World | None = None
    sharded: bool = False
    validation: tuple | None = None
    early_stopping: int | None = None
    schedule: Schedule | None = None

    def __post_init__(self):
        self.epochs = check_whole("epochs", self.epochs, 0)
        self.batch_size = check_whole("batch_size", self.batch_size, 1)
        self.checkpoint_every = check_whole("checkpoint_every", self.checkpoint_every, 1)
        if self.optimizer is not None and not isinstance(self.optimizer, Optimizer):
            raise TypeError(f"optimizer must be a clnet.Optimizer (SGD, Adam, AdamW, RMSprop or one registered), got "
                            f"{type(self.optimizer).__name__}")
        if self.schedule is not None:
            self.schedule = as_schedule(self.schedule)
        if self.sharded and self.world is None:
            raise ValueError("sharded=True is for data-parallel training: pass world=clnet.distributed.World()")
        if self.early_stopping is not None:
            self.early_stopping = check_whole("early_stopping", self.early_stopping, 1)
            if self.validation is None:
                raise ValueError("early_stopping needs a validation set: fit(..., validation=(x_val, y_val))")
        self.checkpoint = None if self.checkpoint is None else saving.file_path(self.checkpoint)
        if self.resume and self.checkpoint is None:
            raise ValueError("resume=True needs the checkpoint file to resume from: fit(..., checkpoint=path)")
        if self.optimizer is None:  # the checkpoint's own when resuming, else Adam
            resuming = self.resume and self.checkpoint.exists()
            self.optimizer = checkpoints.saved_optimizer(self.checkpoint) if resuming else Adam()
        if self.checkpoint is not None:
            self.optimizer.recorded_kind()  # refuse an unregistered optimizer now, not after an epoch

    def learning_rate(self) -> float | None:
        """The rate of the optimizer's next step when a schedule is given (None: its own)."""
        return None if self.schedule is None else self.schedule(self.optimizer.steps)

    def run_description(self, samples: int) -> dict:
        """What a resumed run must share with the one that wrote the checkpoint."""
        return {"samples": samples, "batch_size": self.batch_size, "cost": self.cost, "shuffle": bool(self.shuffle)}


def check_batches(x, y, **given) -> None:
    """Refuse what fit on an iterable of batches cannot take (`given`: those arguments by name),
    and a call without targets for arrays."""
    if sources.is_batches(x, y):
        named = [name for name, value in given.items() if value is not None]
        if named:
            raise ValueError(f"fit on an iterable of batches takes no {', '.join(named)}: pass arrays (np.memmap for "
                             "data bigger than memory), or the weights as each batch's third item")
    elif y is None:
        raise TypeError("fit needs targets y beside x (arrays), or x an iterable of (x, y) batches and no y")


def validation_set(x, y, validation, validation_data, validation_split, sharded: bool, sample_weight) -> tuple:
    """(x, y, validation, sample_weight) after Keras' names: validation_data is validation, and
    validation_split holds out the last rows of x, y (and their weights)."""
    if validation_data is not None:
        if validation is not None:
            raise ValueError("validation_data is Keras' name for validation=: pass one of them, not both")
        validation = validation_data
    if validation_split is None:
        return x, y, validation, sample_weight
    if validation is not None or sharded:
        raise ValueError("validation_split holds out part of x and y; it goes with neither validation= "
                         "nor sharded=True (pass validation=(x_val, y_val) instead)")
    return split_off(x, y, validation_split, sample_weight)


def split_off(x, y, fraction: float, sample_weight=None) -> tuple:
    """(x, y) without their last `fraction` of rows, those rows as (x_val, y_val) (with their
    weights), and the training rows' sample weights (None without)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (float, int)) or not 0 < fraction < 1:
        raise ValueError(f"validation_split must be a fraction between 0 and 1, got {fraction!r}")
    x = x if isinstance(x, (cla.Array, np.ndarray)) else np.asarray(x)  # an np.memmap stays one
    y = y if isinstance(y, cla.Array) else np.asarray(y)
    rows = x.shape[0]
    held = round(rows * fraction)
    if not 0 < held < rows:
        raise ValueError(f"validation_split={fraction} of {rows} rows leaves no training or no validation rows")
    kept = slice(0, rows - held)
    if sample_weight is None:
        return x[kept], y[kept], (x[rows - held:], y[rows - held:]), None
    w = np.asarray(sample_weight)
    if w.shape[:1] != (rows,):
        raise ValueError(f"sample_weight must have one weight per sample ({rows},), got shape {w.shape}")
    return x[kept], y[kept], (x[rows - held:], y[rows - held:], w[rows - held:]), w[kept]
