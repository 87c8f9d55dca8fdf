"""One adjustment to pyopencl, applied when clnet is imported.

pyopencl asks every device for NVIDIA's CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV when it builds a
program and when it prepares a kernel's arguments (characterize.nv_compute_capability), and lets
the error of a device that does not know it pass. A strict implementation reports each of those
queries as an API error (Oclgrind: "clGetDeviceInfo ... CL_INVALID_VALUE", several per
context). Devices whose vendor is not NVIDIA now get the answer None without the query; NVIDIA's
are asked as before. pyopencl looks the function up on its module at every call, so replacing it
there is enough.
"""

from __future__ import annotations

import pyopencl as cl
import pyopencl.characterize as characterize

_asking = characterize.nv_compute_capability


def _nv_compute_capability(dev: cl.Device):
    if "nvidia" not in dev.vendor.lower():
        return None
    return _asking(dev)


if getattr(characterize.nv_compute_capability, "__module__", "") != __name__:
    characterize.nv_compute_capability = _nv_compute_capability
