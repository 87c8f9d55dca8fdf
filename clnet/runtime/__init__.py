"""The bottom layer: OpenCL devices and the choice of one, the Context that owns what is made on
it, kernel templates rendered and built once per context, and kernels called by argument name."""

from . import pyopencl_fixes  # noqa: F401  (see its docstring)
from .drivers import register as _register_pip_drivers
from .paths import point_pocl_at_a_usable_cache as _point_pocl_at_a_usable_cache

_register_pip_drivers()  # before any platform query: the loader reads its folder once per process
_point_pocl_at_a_usable_cache()  # else PoCL lists no devices where it cannot write its cache
