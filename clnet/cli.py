"""The `clnet` command: `clnet devices`, `clnet demo`."""

from __future__ import annotations

import argparse
import sys

from .device import devices, format_table
from .errors import ClnetError


def _devices(args: argparse.Namespace) -> int:
    print(format_table(devices()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.device)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `clnet` console script and `python -m clnet`."""
    parser = argparse.ArgumentParser(prog="clnet", description="Deep learning on any OpenCL device.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("devices", help="list every OpenCL device").set_defaults(run=_devices)
    demo = commands.add_parser("demo", help="choose a device and run the seed article's examples on it")
    demo.add_argument("--device", default=None,
                      help="device spec (default: $CLNET_DEVICE, else the best GPU, else the CPU)")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ClnetError as exc:
        print(f"clnet: error: {exc}", file=sys.stderr)
        return 2
