"""Learning-rate schedules: the rate of each optimizer step, as a formula of the step number.

    clnet.Adam(learning_rate=clnet.Cosine(1e-3, total_steps=3000, warmup_steps=100))
    net.fit(..., schedule=clnet.StepDecay(0.1, every=500, gamma=0.5))

`step` counts the optimizer's steps from 0 (the first update). Any callable of the step works
too (Function: `schedule=lambda step: 0.1 * 0.5 ** (step // 100)`), its rates checked as it
goes. A schedule costs no kernel launch: the optimizer passes the step's rate to its one update
kernel as an argument.

    Constant(rate)                            rate
    StepDecay(rate, every, gamma)             rate * gamma ** (step // every)
    Exponential(rate, gamma)                  rate * gamma ** step
    Cosine(rate, total_steps, warmup_steps=0, min_rate=0)
        step < warmup:  rate * (step + 1) / warmup_steps
        after:          min_rate + (rate - min_rate) * (1 + cos(pi * t)) / 2,
                        t = min(1, (step - warmup_steps) / (total_steps - warmup_steps))
"""

from __future__ import annotations

import math
import numbers


def _positive(name: str, value, whole: bool = False, zero: bool = False):
    kind = numbers.Integral if whole else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value < 0 or (
            value == 0 and not zero):
        raise ValueError(f"{name} must be a {'whole' if whole else 'finite'} number "
                         f"{'>= 0' if zero else '> 0'}, got {value!r}")
    return int(value) if whole else float(value)


def check_learning_rate(learning_rate) -> float:
    """A learning rate as a float: TypeError unless a real number, ValueError unless finite and > 0."""
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
        raise TypeError(f"learning_rate must be a real number, got {learning_rate!r}")
    if not math.isfinite(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate}")
    return float(learning_rate)


class Schedule:
    """Base: `schedule(step)` is the learning rate of optimizer step `step` (from 0)."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError


class Constant(Schedule):
    def __init__(self, rate: float):
        self.rate = check_learning_rate(rate)

    def __call__(self, step: int) -> float:
        return self.rate

    def __repr__(self) -> str:
        return f"{self.rate}"


class StepDecay(Schedule):
    def __init__(self, rate: float, every: int, gamma: float = 0.1):
        self.rate, self.every = _positive("rate", rate), _positive("every", every, whole=True)
        self.gamma = _positive("gamma", gamma)

    def __call__(self, step: int) -> float:
        return self.rate * self.gamma ** (step // self.every)

    def __repr__(self) -> str:
        return f"StepDecay({self.rate}, every={self.every}, gamma={self.gamma})"


class Exponential(Schedule):
    def __init__(self, rate: float, gamma: float):
        self.rate, self.gamma = _positive("rate", rate), _positive("gamma", gamma)

    def __call__(self, step: int) -> float:
        return self.rate * self.gamma ** step

    def __repr__(self) -> str:
        return f"Exponential({self.rate}, gamma={self.gamma})"


class Cosine(Schedule):
    def __init__(self, rate: float, total_steps: int, warmup_steps: int = 0, min_rate: float = 0.0):
        self.rate, self.total = _positive("rate", rate), _positive("total_steps", total_steps, whole=True)
        self.warmup = _positive("warmup_steps", warmup_steps, whole=True, zero=True)
        self.min_rate = _positive("min_rate", min_rate, zero=True)
        if self.warmup >= self.total:
            raise ValueError(f"warmup_steps ({self.warmup}) must be fewer than total_steps ({self.total})")
        if self.min_rate > self.rate:
            raise ValueError(f"min_rate ({self.min_rate}) must not exceed rate ({self.rate})")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.rate * (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / (self.total - self.warmup))
        return self.min_rate + (self.rate - self.min_rate) * (1 + math.cos(math.pi * t)) / 2

    def __repr__(self) -> str:
        return f"Cosine({self.rate}, total_steps={self.total}, warmup_steps={self.warmup}, min_rate={self.min_rate})"


class Function(Schedule):
    """Any callable of the step number as a schedule; each rate it gives is checked."""

    def __init__(self, function):
        self.function = function

    def __call__(self, step: int) -> float:
        rate = self.function(step)
        try:
            return check_learning_rate(rate)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the schedule {self!r} gave {rate!r} for step {step}: a learning rate must be a "
                             "positive finite number") from exc

    def __repr__(self) -> str:
        return getattr(self.function, "__qualname__", None) or repr(self.function)


def as_schedule(learning_rate) -> Schedule:
    """A Schedule as it is, a callable of the step as a Function, or a number as a Constant (see
    check_learning_rate)."""
    if isinstance(learning_rate, Schedule):
        return learning_rate
    return Function(learning_rate) if callable(learning_rate) else Constant(learning_rate)
