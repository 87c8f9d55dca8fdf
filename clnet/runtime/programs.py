"""Kernel programs: find `kernels/`, render its Mako templates, build each once per context.

A template is rendered with the dtype and constants written into the source text, so that a
build error shows exactly what was compiled, and the cache key is just (template, params).
Every kernel is kept too (pyopencl warns when the same kernel is retrieved repeatedly), wrapped
as a `kernels.Kernel` that is called by argument name (see clnet.runtime.kernels).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyopencl as cl
from mako import exceptions as mako_exceptions
from mako.lookup import TemplateLookup

from .device import DeviceInfo
from .errors import DeviceCapabilityError, KernelBuildError, TemplateError
from .kernels import Declarations, Kernel, LaunchPlan, Parameter
from .log import logger
from .paths import cache_dir, listed_driver_caches

REAL_DTYPES = ("float32", "float64")
SLOW_BUILD_SECONDS = 2.0


def kernel_dir() -> Path:
    """The `kernels/` folder: inside the installed package, or beside it in a checkout."""
    package = Path(__file__).resolve().parent.parent  # clnet/
    for candidate in (package / "kernels", package.parent / "kernels"):
        if (candidate / "common.cl").is_file():
            return candidate
    raise TemplateError(f"clnet's kernels/ folder was not found in or next to {package}; "
                        "the installation is incomplete.")


def real_dtype_name(dtype) -> str:
    """'float32' or 'float64' for anything numpy reads as one of them; TypeError otherwise."""
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if name not in REAL_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {name}")
    return name


def require_real_dtype(dtype, info: DeviceInfo) -> np.dtype:
    """`dtype` as np.float32 or np.float64, checking that the device can run it (fp64)."""
    name = real_dtype_name(dtype)
    if name == "float64" and not info.fp64:
        raise DeviceCapabilityError(
            f"float64 needs the cl_khr_fp64 extension, which device {info.name!r} "
            f"({info.platform}) does not have; use float32 or another device.")
    return np.dtype(name)


def _canonical(params: dict) -> tuple:
    """Params as a hashable, ordered key, with `dtype` spelled as its numpy name."""
    items = []
    for key, value in sorted(params.items()):
        if key == "dtype":
            value = np.dtype(value).name
        elif isinstance(value, list):
            value = tuple(value)
        items.append((key, value))
    return tuple(items)


class Recording(threading.local):
    """The LaunchPlan a thread is recording into (`plan`, None when it records nothing): each thread
    of a context records only its own launches."""

    plan: LaunchPlan | None = None


class Templates:
    """Renders the `.cl` Mako templates of some folders (clnet's own `kernels/` by default)."""

    def __init__(self, directories: Sequence[str | Path] | None = None):
        self.directories = [Path(d) for d in (directories or [kernel_dir()])]
        self._lookup = TemplateLookup(directories=[str(d) for d in self.directories],
                                      strict_undefined=True, input_encoding="utf-8")

    def _template(self, name: str):
        try:
            return self._lookup.get_template(name)
        except mako_exceptions.TopLevelLookupException as exc:
            known = sorted(p.name for d in self.directories for p in d.glob("*.cl"))
            raise TemplateError(f"No kernel template {name!r}; known templates: {', '.join(known)}") from exc

    def module(self, name: str):
        """The module-level names of template `name` (its `<%! %>` block), such as a table."""
        return self._template(name).module

    def render(self, name: str, params: dict, declarations: Declarations | None = None) -> str:
        """The OpenCL source of template `name` for these params; TemplateError on failure.

        declarations: the templates' `kernel(name, parameters)`, which keeps the signatures."""
        template = self._template(name)
        try:
            return template.render(**params, kernel=declarations or Declarations())
        except Exception as exc:  # Mako raises NameError, SyntaxException, anything from the template's Python
            raise TemplateError(
                f"Kernel template {name!r} failed to render with params {params}: "
                f"{type(exc).__name__}: {exc}") from exc


@contextmanager
def slow_build_notice(what: str, seconds: float = SLOW_BUILD_SECONDS) -> Iterator[None]:
    """Say once, if `what` takes longer than `seconds`, what is compiling and that it is cached."""
    done = threading.Event()

    def notify() -> None:
        if not done.wait(seconds):
            logger.info("compiling %s; this happens once, the driver caches the result", what)

    threading.Thread(target=notify, daemon=True).start()
    try:
        yield
    finally:
        done.set()


_QUIET = threading.Lock()  # catch_warnings changes process-wide state: one build at a time in it


@contextmanager
def quiet_compiler() -> Iterator[None]:
    """Drops pyopencl's CompilerWarning of a build that succeeds (Intel's runtime reports its
    vectorization on every build); PYOPENCL_COMPILER_OUTPUT=1 shows them, as pyopencl's own switch.
    A failed build's messages are in its KernelBuildError. Other warnings are passed on."""
    if os.environ.get("PYOPENCL_COMPILER_OUTPUT", "0") != "0":
        yield
        return
    with _QUIET, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        if not issubclass(warning.category, cl.CompilerWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


class Programs:
    """The programs and kernels built in one OpenCL context, each built once."""

    def __init__(self, context: cl.Context, info: DeviceInfo, templates: Templates | None = None):
        self._context = context
        self.info = info
        self.templates = templates or Templates()
        self._programs: dict[tuple, cl.Program] = {}
        self._signatures: dict[tuple, dict[str, tuple[Parameter, ...]]] = {}
        self._kernels: dict[tuple, Kernel] = {}
        self._by_call: dict[tuple, Kernel] = {}
        self.launches = [0]  # kernel launches so far, counted by the kernels (a list: shared)
        self.recording = Recording()  # each thread's plan being recorded (shared by the kernels)

    def __len__(self) -> int:
        return len(self._programs) + len(self._kernels)

    def program(self, name: str, **params) -> cl.Program:
        """The built program of template `name` for these params (built on first use)."""
        key = (name, _canonical(params))
        program = self._programs.get(key)
        if program is None:
            program, signatures = self._build(name, dict(key[1]))
            self._programs[key], self._signatures[key] = program, signatures
        return program

    def kernel(self, name: str, kernel_name: str, **params) -> Kernel:
        """The kernel `kernel_name` of template `name` for these params, the same object each call."""
        # Launches look kernels up on every call: first by the params exactly as given (cheap),
        # then by their canonical spelling (np.dtype(...).name costs microseconds).
        fast_key = (name, kernel_name, tuple(params.items()))
        kernel = self._by_call.get(fast_key)
        if kernel is None:
            kernel = self._by_call[fast_key] = self._kernel(name, kernel_name, params)
        return kernel

    def _kernel(self, name: str, kernel_name: str, params: dict) -> Kernel:
        key = (name, _canonical(params), kernel_name)
        kernel = self._kernels.get(key)
        if kernel is None:
            program = self.program(name, **params)
            signature = self._signatures[key[:2]].get(kernel_name)
            if signature is None:
                raise TemplateError(f"Template {name!r} declares no kernel {kernel_name!r} (declared: "
                                    f"{', '.join(self._signatures[key[:2]]) or 'none'})")
            real = np.dtype(params["dtype"]) if "dtype" in params else None
            try:
                made = cl.Kernel(program, kernel_name)
            except cl.LogicError as exc:  # the source declares it: the binary came from a damaged cache
                if exc.code != cl.status_code.INVALID_KERNEL_NAME:
                    raise
                raise KernelBuildError(
                    f"{self.info.name!r} built template {name!r} without its kernel {kernel_name!r}: its driver's "
                    f"kernel cache holds a damaged or stale binary ({listed_driver_caches()}). `clnet cache --clear` "
                    "empties the kernel caches; then run again", log=str(exc), source_path=None) from exc
            kernel = Kernel(made, kernel_name, signature, real, self.launches, self.recording, program)
            self._kernels[key] = kernel
        return kernel

    def clear(self) -> None:
        """Drop every program and kernel (OpenCL releases them with the last reference)."""
        self._by_call.clear()
        self._kernels.clear()
        self._programs.clear()
        self._signatures.clear()

    def _build(self, name: str, params: dict) -> tuple[cl.Program, dict[str, tuple[Parameter, ...]]]:
        if "dtype" in params:
            require_real_dtype(params["dtype"], self.info)
        declarations = Declarations()  # the templates' `kernel(name, parameters)`
        source = self.templates.render(name, params, declarations)
        started = time.perf_counter()
        program = cl.Program(self._context, source)
        try:
            with slow_build_notice(f"{name} {params} for {self.info.name}"), quiet_compiler():
                program.build()
        except cl.Error as exc:
            try:
                with warnings.catch_warnings():  # pyopencl's note on caching: this program is not kept
                    warnings.simplefilter("ignore", UserWarning)
                    log = program.get_build_info(self.info.cl_device, cl.program_build_info.LOG)
            except cl.Error:
                log = ""
            # pyopencl's error holds the compiler's messages too; Intel's runtime returns an
            # empty log after a failed build, so that is the only copy there
            log = log if log.strip() else str(exc)
            try:
                path = self._save_failed_source(name, source)
                saved = f"Source saved to {path}"
            except OSError as problem:  # the build's error matters more than the copy's
                path, saved = None, f"(its source could not be saved: {problem})"
            raise KernelBuildError(
                f"Kernel template {name!r} with params {params} failed to build on "
                f"{self.info.name!r}. {saved}. Build log:\n{log.strip()}",
                log=log, source_path=None if path is None else str(path)) from exc
        logger.debug("built %s %s in %.2f s", name, params, time.perf_counter() - started)
        return program, declarations.signatures

    @staticmethod
    def _save_failed_source(name: str, source: str) -> Path:
        folder = cache_dir() / "failed-builds"
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(source.encode()).hexdigest()[:12]
        path = folder / f"{Path(name).stem}-{digest}.cl"
        path.write_text(source)
        return path
