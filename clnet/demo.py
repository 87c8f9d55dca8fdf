"""The main job (`make demo`, `clnet demo`): show the devices, choose one, run the examples."""

from __future__ import annotations

from .context import Context
from .device import devices, format_table


def run_demo(spec: str | None = None) -> int:
    """Print the device table, say which device was chosen and why, and run the examples."""
    infos = devices()
    with Context(spec) as ctx:
        print("OpenCL devices of this machine ('*' = chosen):")
        print(format_table(infos, chosen=ctx.info))
        print(f"\nChosen: {ctx.info.name} ({ctx.info.platform}), {ctx.reason}.")
    return 0
