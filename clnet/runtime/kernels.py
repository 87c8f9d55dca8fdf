"""Kernel signatures, declared once in the template and bound by name in Python.

A template declares each kernel with `${kernel("name", "const real *x, real *y, real scale, index_t n")}`.
Rendering turns the declaration into the C signature and records it, so the Python side and
the source agree by construction. The parameter kinds:

    const T *x / T *x    an array: `__global [const] T *x_p, const index_t x_off`; Python passes a
                         pyopencl array (its buffer and element offset are passed for it) or a
                         plain cl.Buffer (offset 0)
    local T *x           local memory: `__local T *x`; Python passes cl.LocalMemory
    T x                  a scalar: `const T x`

T is `real` (the program's dtype) or one of SCALAR_TYPES. Kernels are called with keyword
arguments only, named as declared: a missing, unknown or positional argument, or an array of
the wrong dtype, raises TypeError instead of running with its arguments swapped.

Every launch's local size passes through one place, `Kernel.work_group`: a size the kernel or
the device cannot run (CL_KERNEL_WORK_GROUP_SIZE, which register pressure can put below the
device's limit, or a per-dimension CL_DEVICE_MAX_WORK_ITEM_SIZES) is halved, largest dimension
first, until it fits. The launches' global sizes are multiples of the sizes asked for, so they
stay multiples, and the kernels read get_local_size, so any size gives the same numbers.

A LaunchPlan records launches once (Context.record) and queues them again with no Python work
per launch beyond the enqueue: each recorded launch keeps its own cl.Kernel with its arguments
set. A training step's forward and backward passes run this way (clnet.nn.network).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import pyopencl as cl
import pyopencl.array as cla

from .errors import TemplateError

# Typed, pyopencl sets a scalar in 0.5 us; an untyped numpy scalar takes 7 us.
SCALAR_TYPES = {"index_t": np.uint32, "uint": np.uint32, "int": np.int32, "ulong": np.uint64,
                "long": np.int64, "float": np.float32, "double": np.float64}


@dataclass(frozen=True)
class Parameter:
    """One declared kernel parameter: kind is "array", "local" or "scalar"."""

    name: str
    kind: str
    type: str
    const: bool = False

    def c_declaration(self) -> str:
        if self.kind == "array":
            const = "const " if self.const else ""
            return f"__global {const}{self.type} *{self.name}_p, const index_t {self.name}_off"
        if self.kind == "local":
            return f"__local {self.type} *{self.name}"
        return f"const {self.type} {self.name}"

    def dtype(self, real: np.dtype | None) -> np.dtype | None:
        """The numpy dtype of the values (array elements or the scalar)."""
        return real if self.type == "real" else np.dtype(SCALAR_TYPES[self.type])


def parse_declaration(kernel_name: str, text: str) -> tuple[Parameter, ...]:
    """The parameters of a declaration such as "const real *x, real *y, index_t n"."""
    parameters = []
    for part in text.split(","):
        words = part.replace("*", " * ").split()
        const, local = "const" in words, "local" in words
        words = [w for w in words if w not in ("const", "local")]
        pointer = "*" in words
        words = [w for w in words if w != "*"]
        if len(words) != 2 or not words[1].isidentifier() or (
                words[0] != "real" and words[0] not in SCALAR_TYPES):
            raise TemplateError(f"kernel {kernel_name!r}: cannot read the parameter {part.strip()!r}; write "
                                f"'[const|local] TYPE [*]NAME' with TYPE real or one of {', '.join(SCALAR_TYPES)}")
        kind = "local" if local else "array" if pointer else "scalar"
        parameters.append(Parameter(words[1], kind, words[0], const))
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise TemplateError(f"kernel {kernel_name!r} declares a parameter name twice: {names}")
    return tuple(parameters)


class Declarations:
    """The `kernel(name, parameters)` function a template is rendered with; keeps what it declared."""

    def __init__(self):
        self.signatures: dict[str, tuple[Parameter, ...]] = {}

    def __call__(self, name: str, parameters: str) -> str:
        parsed = parse_declaration(name, parameters)
        self.signatures[name] = parsed
        return f"__kernel void {name}({', '.join(p.c_declaration() for p in parsed)})"


class LaunchPlan:
    """Launches recorded by Context.record, queued again in order by Context.replay.

    Work that is not a clnet kernel but queues the same thing every time (a CLBlast GEMM on the
    same buffers) is kept as a call (`add_call`, through Context.foreign) and called again in its
    place. `complete` is False when the recorded code queued other work (Context.not_recordable):
    such a plan would leave that work out, so it must not be replayed. A plan holds its
    arguments (buffers included), so they stay alive as long as it does."""

    def __init__(self):
        # (kernel, global size, local size), or (a call, None, None) for foreign work
        self.launches: list[tuple] = []
        self.complete = True
        self._arguments: list[list] = []

    def add_call(self, call) -> None:
        """Keep a call that queues foreign work, to call again at replay."""
        self.launches.append((call, None, None))

    @property
    def kernels(self) -> int:
        """The clnet kernels among the plan's launches."""
        return sum(global_size is not None for _, global_size, _ in self.launches)

    def add(self, program: cl.Program, name: str, scalar_dtypes: list, global_size: tuple,
            local_size: tuple | None, values: list) -> None:
        own = cl.Kernel(program, name)  # a kernel of its own: its arguments stay set
        # set one by one, scalars typed here: set_scalar_arg_dtypes would generate and cache an
        # invoker per kernel object, about 1 ms each
        for index, (value, dtype) in enumerate(zip(values, scalar_dtypes)):
            own.set_arg(index, value if dtype is None else dtype.type(value))
        self.launches.append((own, tuple(global_size), None if local_size is None else tuple(local_size)))
        self._arguments.append(values)

    def __len__(self) -> int:
        return len(self.launches)


class Kernel:
    """A built kernel, called as `kernel(queue, global_size, local_size, **arguments)`."""

    def __init__(self, cl_kernel: cl.Kernel, name: str, parameters: tuple[Parameter, ...],
                 real: np.dtype | None, counter: list[int], recording, program: cl.Program):
        self.cl_kernel, self.name, self.parameters, self.program = cl_kernel, name, parameters, program
        self._names = frozenset(p.name for p in parameters)
        self._bound = [(p.name, p.kind == "array", p.dtype(real)) for p in parameters]
        self._counter = counter  # shared by the kernels of one context: launches so far
        self._recording = recording  # shared by the kernels of one context: each thread's plan being recorded
        # a kernel object's arguments are set, then it is queued: two threads must not interleave
        # (OpenCL's clSetKernelArg is the one call that is not thread-safe on a shared object)
        self._lock = threading.Lock()
        scalar_dtypes: list = []
        for p in parameters:
            scalar_dtypes += [None, np.dtype(np.uint32)] if p.kind == "array" else [
                None if p.kind == "local" else p.dtype(real)]
        cl_kernel.set_scalar_arg_dtypes(scalar_dtypes)
        self._scalar_dtypes = scalar_dtypes
        self._limits: tuple[int, tuple[int, ...]] | None = None  # (work-items, per dimension) on its device
        self._fitted: dict[tuple, tuple] = {}  # local size asked for -> the size it runs with

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.c_declaration() for p in self.parameters)})"

    def limits(self, device: cl.Device) -> tuple[int, tuple[int, ...]]:
        """(the most work-items in one work-group of this kernel on `device`, the most along each
        dimension): CL_KERNEL_WORK_GROUP_SIZE, at most the device's, and its
        CL_DEVICE_MAX_WORK_ITEM_SIZES. Queried once: a context's kernels run on one device."""
        if self._limits is None:
            own = self.cl_kernel.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, device)
            self._limits = (min(own, device.max_work_group_size), tuple(device.max_work_item_sizes))
        return self._limits

    def preferred_multiple(self, device: cl.Device) -> int:
        """CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE: the warp or wavefront, 1 or a vector's
        lanes on CPUs."""
        return self.cl_kernel.get_work_group_info(
            cl.kernel_work_group_info.PREFERRED_WORK_GROUP_SIZE_MULTIPLE, device)

    def _fits(self, local_size: tuple) -> bool:
        most, per_dimension = self._limits
        return math.prod(local_size) <= most and all(n <= m for n, m in zip(local_size, per_dimension))

    def work_group(self, device: cl.Device, local_size: tuple | None) -> tuple | None:
        """local_size, or the largest size made from it by halving (largest dimension first) that
        this kernel runs on `device` (`limits`); None stays None (the driver chooses). ValueError
        naming the limit where halving cannot reach it (an odd size)."""
        if local_size is None:
            return None
        most, per_dimension = self.limits(device)
        if self._fits(local_size):
            return local_size
        local = list(local_size)
        while True:
            over = [d for d, n in enumerate(local) if n > per_dimension[d]] or (
                [max(range(len(local)), key=local.__getitem__)] if math.prod(local) > most else [])
            if not over:
                return tuple(local)
            if local[over[0]] % 2:
                raise ValueError(f"kernel {self.name}: a work-group of {tuple(local_size)} work-items cannot be "
                                 f"halved to this kernel's limit on {device.name.strip()} ({most} work-items, "
                                 f"{per_dimension[:len(local)]} per dimension)")
            local[over[0]] //= 2

    def __call__(self, queue: cl.CommandQueue, global_size: tuple, local_size: tuple | None, /,
                 **arguments) -> cl.Event:
        """Queue the kernel with its arguments by name; returns the event (not waited on)."""
        if len(arguments) != len(self._bound) or not self._names.issuperset(arguments):
            missing = sorted(self._names - set(arguments))
            unknown = sorted(set(arguments) - self._names)
            raise TypeError(f"kernel {self.signature()}: missing {missing}, unknown {unknown}")
        values = []
        append = values.append
        for name, is_array, dtype in self._bound:
            value = arguments[name]
            if not is_array:
                append(value)
            elif isinstance(value, cla.Array):
                if value.dtype is not dtype and value.dtype != dtype:  # `is`: the common case, fast
                    raise TypeError(f"kernel {self.name}: argument {name!r} must hold {dtype}, got {value.dtype}")
                append(value.base_data)
                append(value.offset // dtype.itemsize)
            elif isinstance(value, cl.Buffer):
                append(value)
                append(0)
            else:
                raise TypeError(f"kernel {self.name}: argument {name!r} must be a device array, "
                                f"got {type(value).__name__}")
        if local_size is not None:
            asked = local_size if type(local_size) is tuple else tuple(local_size)
            fitted = self._fitted.get(asked)
            if fitted is None:  # queue.device costs a query: once per size asked for, not per launch
                fitted = self._fitted[asked] = self.work_group(queue.device, asked)
            local_size = fitted
        plan = self._recording.plan
        if plan is not None:
            plan.add(self.program, self.name, self._scalar_dtypes, global_size, local_size, values)
        with self._lock:
            self._counter[0] += 1
            return self.cl_kernel(queue, global_size, local_size, *values)
