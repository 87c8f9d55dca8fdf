"""fit's arguments, each checked once, with a message that says what is allowed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..distributed import World
from . import checkpoints, saving
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
