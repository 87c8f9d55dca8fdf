"""Optimizers: objects that update a network's parameters from their gradients, with their
state (velocities, moment estimates) on the device.

Parameters, gradients and state are each one flat buffer (clnet.nn.FlatArrays), so a step over
a whole network is one kernel launch:

    opt = clnet.Adam(learning_rate=1e-3)
    opt.step(net.parameter_buffer, net.gradient_buffer)

Optimizers are registered types, as layers are: a checkpoint records the registered name of the
optimizer and its config, and a resume finds the type by that name. One defined outside clnet
subclasses Optimizer, sets `state_arrays`, writes `update` (its kernel launches) and registers:

    @clnet.register_optimizer
    class Plain(clnet.Optimizer):
        def __init__(self, learning_rate=0.01):
            super().__init__()
            self.learning_rate = learning_rate
        def update(self, ctx, w, g, state, kept):
            clnet.ops.updates.sgd_step(ctx, w, g, self.rate(), kept=kept)
"""

from __future__ import annotations

import inspect
import math
import numbers
import weakref

import numpy as np
import pyopencl.array as cla

from ..nn.parameters import FlatArrays
from ..nn.registry import register_in
from ..ops import updates
from ..ops.arrays import sum_groups
from .schedules import Constant, Schedule, as_schedule


def _real(name: str, value, low: float, high: float = math.inf, low_open: bool = False,
          high_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return float(value)


_TYPES: dict[str, type[Optimizer]] = {}


def register_optimizer(cls: type[Optimizer], name: str | None = None) -> type[Optimizer]:
    """Register the optimizer type `cls` under `name` (default: the class name), so that
    checkpoints record it and resume it; returns cls (a class decorator too). Another class
    under a taken name raises."""
    cls.registered_name = register_in(_TYPES, cls, Optimizer, name, "optimizer")
    return cls


def from_record(kind: str, config: dict | None) -> Optimizer:
    """A new optimizer of the registered type `kind` with `config` (a checkpoint's record)."""
    cls = _TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown optimizer {kind!r}: register it with clnet.register_optimizer before resuming "
                         f"(registered: {', '.join(sorted(_TYPES))})")
    if config is None:
        raise ValueError(f"the checkpoint's {kind} has a learning-rate schedule that is not recorded: pass the "
                         "optimizer to resume with (fit(..., optimizer=...))")
    return cls(**config)


def registered() -> dict[str, type[Optimizer]]:
    """Every registered optimizer type by name."""
    return dict(_TYPES)


class Optimizer:
    """Base: state buffers laid out like the parameters (zeros at the first step), and `step`.

    The state belongs to one parameter buffer, held weakly: stepping another network's
    parameters starts a fresh state. The buffers are released with their context.
    clip_norm (Keras' global_clipnorm): before each update, scale the gradients of every
    parameter together by clip_norm / (norm + 1e-6) when their norm exceeds clip_norm, as
    torch.nn.utils.clip_grad_norm_ does.
    """

    state_arrays = 0
    registered_name: str | None = None

    def __init__(self, clip_norm: float | None = None):
        self._parameters: weakref.ref | None = None
        self._state: list[FlatArrays] = []
        self.steps = 0
        self.schedule: Schedule = as_schedule(0.01)
        self._override: float | None = None  # the rate of the step being taken, when given to step()
        self.clip_norm = None if clip_norm is None else _real("clip_norm", clip_norm, 0, low_open=True)
        self._norm_sums: cla.Array | None = None  # the gradients' norm's partial sums, when clipping

    @property
    def kind(self) -> str | None:
        """The registered name a checkpoint records: the nearest registered class whose update this
        one runs (a subclass that only wraps `step` is still its parent); None for a class with an
        `update` of its own that is not registered (it trains, but cannot be checkpointed)."""
        for cls in type(self).__mro__:
            if cls.__dict__.get("registered_name") and _TYPES.get(cls.registered_name) is cls:
                return cls.registered_name
            if "update" in cls.__dict__:
                return None
        return None

    def recorded_kind(self) -> str:
        """`kind`, or ValueError saying to register the class."""
        if self.kind is None:
            raise ValueError(f"the optimizer type {type(self).__name__} is not registered: call "
                             f"clnet.register_optimizer({type(self).__name__}) so that checkpoints can record and "
                             "resume it")
        return self.kind

    def config(self) -> dict | None:
        """The arguments that make this optimizer again (its __init__'s parameters, read from the
        attributes of the same names); None when its rate is a schedule other than a constant."""
        if not isinstance(self.schedule, Constant):
            return None
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        missing = [p for p in names if p != "learning_rate" and not hasattr(self, p)]
        if missing:
            raise ValueError(f"{type(self).__name__}.config: no attribute for its parameters {missing}; keep each "
                             "__init__ argument as an attribute of the same name, or override config()")
        return {p: self.schedule.rate if p == "learning_rate" else getattr(self, p) for p in names}

    @property
    def learning_rate(self) -> float:
        """The rate of the next step (from `schedule`)."""
        return self.schedule(self.steps)

    @learning_rate.setter
    def learning_rate(self, value: float | Schedule) -> None:
        self.schedule = as_schedule(value)

    def rate(self) -> float:
        """The learning rate of the step being taken (for `update`)."""
        if self._override is not None:
            return self._override
        return self.schedule(self.steps - 1)  # in update: steps counts the step being taken

    def reset(self) -> None:
        """Forget every velocity and moment estimate and the step count (the next step starts afresh)."""
        self._parameters, self._state, self.steps, self._norm_sums = None, [], 0, None

    def state(self, params: FlatArrays) -> list[FlatArrays]:
        """The state buffers for `params` (made, zeroed, on first use)."""
        if self._parameters is None or self._parameters() is not params:
            self.reset()
            self._parameters = weakref.ref(params)
            self._state = [params.like() for _ in range(self.state_arrays)]
        return self._state

    def step(self, params: FlatArrays, grads: FlatArrays, keep: FlatArrays | None = None,
             learning_rate: float | None = None) -> None:
        """Queue the update of every parameter from its gradient: one kernel launch.

        keep: also copy the parameters as they were before the step there, in the same launch
        (a network's `kept_buffer`, which `restore_parameters` puts back). learning_rate: this
        step's rate instead of the optimizer's own schedule (fit's schedule= gives it)."""
        if not isinstance(params, FlatArrays) or not isinstance(grads, FlatArrays):
            raise TypeError(f"step takes a network's parameter and gradient buffers (clnet.nn.FlatArrays), "
                            f"got {type(params).__name__} and {type(grads).__name__}")
        for name, other in (("gradient", grads), ("keep", keep)):
            if other is not None and (other.shapes != params.shapes or other.dtype != params.dtype
                                      or other.ctx is not params.ctx):
                raise ValueError(f"the {name} buffer must have the parameters' shapes, dtype and context")
        state = [s.flat for s in self.state(params)]
        self._begin_step()
        self._override = learning_rate
        try:
            if self.clip_norm is not None:
                if self._norm_sums is None or self._norm_sums.dtype != params.dtype:  # once per buffer
                    self._norm_sums = cla.empty(params.ctx.queue, sum_groups(params.ctx, grads.flat.size), params.dtype)
                updates.clip_by_norm(params.ctx, grads.flat, self.clip_norm, self._norm_sums)
            self.update(params.ctx, params.flat, grads.flat, state, None if keep is None else keep.flat)
        finally:
            self._override = None

    def _begin_step(self) -> None:
        self.steps += 1

    def host_state(self, params: FlatArrays) -> list[np.ndarray]:
        """The state buffers for `params` copied to the host (for a checkpoint)."""
        return [state.flat.get() for state in self.state(params)]

    def restore_state(self, params: FlatArrays, steps: int, arrays: list[np.ndarray]) -> None:
        """Set the step count and the state buffers for `params` (from a checkpoint)."""
        state = self.state(params)
        if len(arrays) != len(state) or any(a.shape != s.flat.shape for a, s in zip(arrays, state)):
            raise ValueError(f"{type(self).__name__} keeps {len(state)} state buffer(s) of {params.flat.size} "
                             f"elements, the checkpoint has {[a.shape for a in arrays]}")
        for buffer, array in zip(state, arrays):
            buffer.flat.set(np.ascontiguousarray(array, dtype=params.dtype))
        self.steps = int(steps)

    def update(self, ctx, w: cla.Array, g: cla.Array, state: list[cla.Array], kept: cla.Array | None) -> None:
        """Queue the update of the flat parameters w from the gradients g (clipped already), with
        the `state_arrays` state buffers, at the rate `self.rate()`; kept: where to copy w as it
        was before the step (None: nowhere). What a new optimizer writes."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The hyper-parameters (plain values): what a checkpoint records, and a resume must share."""
        found = {"learning_rate": repr(self.schedule)}
        return found if self.clip_norm is None else {**found, "clip_norm": self.clip_norm}


class SGD(Optimizer):
    """Stochastic gradient descent, as torch.optim.SGD (dampening 0):

        d = g + weight_decay * w
        b = momentum * b + d                 (b = d at the first step)
        w -= learning_rate * (d + momentum * b)   with nesterov
        w -= learning_rate * b                    without (w -= learning_rate * d if momentum = 0)
    """

    def __init__(self, learning_rate: float | Schedule = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, clip_norm: float | None = None):
        super().__init__(clip_norm)
        self.learning_rate = learning_rate
        self.momentum = _real("momentum", momentum, 0, 1)
        self.weight_decay = _real("weight_decay", weight_decay, 0)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.state_arrays = 1 if self.momentum else 0

    def update(self, ctx, w, g, state, kept) -> None:
        if self.momentum:
            (velocity,) = state
            updates.momentum_step(ctx, w, g, velocity, self.rate(), self.momentum, self.weight_decay, self.nesterov,
                                  kept)
        else:
            updates.sgd_step(ctx, w, g, self.rate(), self.weight_decay, kept)

    def settings(self) -> dict:
        return {**super().settings(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}

    def __repr__(self) -> str:
        return (f"SGD(learning_rate={self.schedule!r}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay})")


class Adam(Optimizer):
    """Adam, as torch.optim.Adam (weight decay added to the gradient, not AdamW's), at step t:

        d = g + weight_decay * w
        m = beta1 * m + (1 - beta1) * d
        v = beta2 * v + (1 - beta2) * d**2
        w -= learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)
    """

    state_arrays = 2

    def __init__(self, learning_rate: float | Schedule = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, clip_norm: float | None = None):
        super().__init__(clip_norm)
        self.learning_rate = learning_rate
        self.beta1 = _real("beta1", beta1, 0, 1)
        self.beta2 = _real("beta2", beta2, 0, 1)
        self.eps = _real("eps", eps, 0, low_open=True)
        self.weight_decay = _real("weight_decay", weight_decay, 0)

    decoupled = False  # AdamW: the decay shrinks w instead of joining the gradient

    def update(self, ctx, w, g, state, kept) -> None:
        m, v = state
        updates.adam_step(ctx, w, g, m, v, step=self.steps, learning_rate=self.rate(), beta1=self.beta1,
                          beta2=self.beta2, eps=self.eps, weight_decay=self.weight_decay, kept=kept,
                          decoupled=self.decoupled)

    def settings(self) -> dict:
        return {**super().settings(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(learning_rate={self.schedule!r}, beta1={self.beta1}, beta2={self.beta2}, "
                f"eps={self.eps}, weight_decay={self.weight_decay})")


class AdamW(Adam):
    """AdamW, as torch.optim.AdamW (decoupled weight decay, default 0.01), at step t:

        w *= 1 - learning_rate * weight_decay
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        w -= learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)
    """

    decoupled = True

    def __init__(self, learning_rate: float | Schedule = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01, clip_norm: float | None = None):
        super().__init__(learning_rate, beta1, beta2, eps, weight_decay, clip_norm)


class RMSprop(Optimizer):
    """RMSprop, as torch.optim.RMSprop:

        d = g + weight_decay * w
        v = alpha * v + (1 - alpha) * d**2
        centered:  a = alpha * a + (1 - alpha) * d;  s = sqrt(v - a**2) + eps   else s = sqrt(v) + eps
        momentum:  b = momentum * b + d / s;  w -= learning_rate * b           else w -= learning_rate * d / s
    """

    def __init__(self, learning_rate: float | Schedule = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 clip_norm: float | None = None):
        super().__init__(clip_norm)
        self.learning_rate = learning_rate
        self.alpha = _real("alpha", alpha, 0, 1)
        self.eps = _real("eps", eps, 0, low_open=True)
        self.weight_decay = _real("weight_decay", weight_decay, 0)
        self.momentum = _real("momentum", momentum, 0, 1)
        self.centered = bool(centered)
        self.state_arrays = 1 + self.centered + bool(self.momentum)  # v, then a, then b

    def update(self, ctx, w, g, state, kept) -> None:
        v, rest = state[0], state[1:]
        a = rest.pop(0) if self.centered else None
        b = rest.pop(0) if self.momentum else None
        updates.rmsprop_step(ctx, w, g, v, a, b, learning_rate=self.rate(), alpha=self.alpha, eps=self.eps,
                             weight_decay=self.weight_decay, momentum=self.momentum, kept=kept)

    def settings(self) -> dict:
        return {**super().settings(), "alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay,
                "momentum": self.momentum, "centered": self.centered}

    def __repr__(self) -> str:
        return (f"RMSprop(learning_rate={self.schedule!r}, alpha={self.alpha}, eps={self.eps}, weight_decay="
                f"{self.weight_decay}, momentum={self.momentum}, centered={self.centered})")


for _cls in (SGD, Adam, AdamW, RMSprop):
    register_optimizer(_cls)
