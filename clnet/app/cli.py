"""The `clnet` command: `clnet devices`, `clnet demo`, `clnet tune`, `clnet bench`, `clnet cache`."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

from ..ops.blas import HAVE_CLBLAST, NO_CLBLAST
from ..runtime import checks
from ..runtime.context import Context
from ..runtime.device import choose, devices, format_table
from ..runtime.errors import ClnetError
from ..runtime.log import logger
from ..runtime.paths import cache_dir, driver_caches
from ..tuning import load, tune, tuned_dtypes, tuning_path
from . import bench
from .demo import run_demo
from .isolated import run_alone
from .selfcheck import check_device


def show_notes() -> None:
    """Show clnet's log notes (slow first builds) on stderr, at $CLNET_LOG_LEVEL (default INFO):
    the library itself leaves output to the application."""
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("clnet: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(os.environ.get("CLNET_LOG_LEVEL", "INFO").upper())
    logger.propagate = False


def _devices(args: argparse.Namespace) -> int:
    infos, saved = devices(), load()
    failed = False
    if args.check:  # each device in a process of its own: a driver that crashes takes only that one down
        for info in infos:
            try:
                verdict = run_alone(check_device, info.index)
            except Exception as exc:
                verdict = {"passed": False, "failed": [f"the check itself: {type(exc).__name__}: {exc}"]}
                checks.store(info, verdict)
            failed |= not verdict["passed"]
            print(f"{info.index} {info.name} ({info.platform}): " +
                  ("passed" if verdict["passed"] else "FAILED\n  " + "\n  ".join(verdict["failed"])), flush=True)
        print()
    tuned = {info.index: ", ".join(tuned_dtypes(info, saved)) or "-" for info in infos}
    verdicts = checks.load()
    print(format_table(infos, extra=[("tuned", tuned),
                                     ("check", {info.index: checks.describe(info, verdicts) for info in infos})]))
    if not HAVE_CLBLAST:
        print(f"\n{NO_CLBLAST}: CPUs use clnet's own GEMM, GPUs its GPU kernel.")
    if any(checks.failures(info, verdicts) for info in infos):
        print("\nA device that failed its check is never chosen by default; `clnet devices --check` checks again.")
    return 1 if failed else 0


def _tune(args: argparse.Namespace) -> int:
    infos = devices()
    specs = args.device or [None]
    chosen = infos if "all" in specs else list({i.key: i for i in (choose(s, infos)[0] for s in specs)}.values())
    if len(chosen) == 1:  # here, with the spec as given (the context says why it chose the device)
        spec = specs[0] if len(specs) == 1 and specs[0] != "all" else chosen[0].index
        tune_device(spec, args.dtype, args.quick, not args.no_progress)
    else:  # each device in a process of its own, so that no runtime's threads disturb another's timing
        for info in chosen:
            run_alone(tune_device, info.index, args.dtype, args.quick, not args.no_progress)
    return 0


def tune_device(spec: str | None, dtypes: list[str], quick: bool, progress: bool) -> None:
    """`clnet tune` on the device `spec` names: every dtype, saved to the tuning file."""
    show_notes()
    with Context(spec) as ctx:
        print(f"Tuning GEMM on {ctx.info.name} ({ctx.info.platform}): {ctx.reason}.", flush=True)
        for dtype in dtypes:
            entry = tune(ctx, dtype, quick=quick, progress=progress)
            skipped = [c for c in entry["candidates"] if "error" in c]
            print(f"{dtype}: small products -> {entry['backend']['small']}, large -> {entry['backend']['large']}; "
                  f"clnet tiles {entry['clnet']}; {len(skipped)} candidate(s) skipped")
            for name, figures in entry["gflops"].items():
                shown = ", ".join(f"{backend} {gflops:.0f}" for backend, gflops in sorted(figures.items()))
                print(f"  {name}: GFLOP/s {shown}; numpy {entry['numpy_gflops'][name]:.0f}")
    print(f"Saved to {tuning_path()}; every new clnet.Context on this device applies it.", flush=True)


def _cache(args: argparse.Namespace) -> int:
    """Where clnet and the drivers keep files; --clear empties the drivers' kernel caches."""
    drivers = driver_caches()
    for owner, path in {"clnet": cache_dir(), **drivers}.items():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"{owner:9} {size / 2**20:9.1f} MiB  {path}")
    if args.clear:
        for owner, path in drivers.items():
            shutil.rmtree(path, ignore_errors=True)
            print(f"emptied {owner}'s kernel cache {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    return run_demo(args.device)


def _bench(args: argparse.Namespace) -> int:
    results = bench.run(args.device, quick=args.quick, progress=not args.no_progress,
                            references=not args.no_references)
    print(f"clnet bench{' --quick' if args.quick else ''} on {results['machine']['cpu']}, "
          f"{results['machine']['date']}: medians after a warm-up, float32")
    print(bench.format_table(results))
    json_path, png_path = bench.save(results, args.out)
    fastest = next((c for c in results["columns"] if c.get("key") == results["fastest"]), None)
    if fastest:
        print(f"\nFastest device for training: {fastest['name']}; Context('fastest') now chooses it.")
    print(f"Wrote {json_path}" + (f" and {png_path}" if png_path else " (no chart: pip install 'clnet[plot]')"))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `clnet` console script and `python -m clnet`."""
    parser = argparse.ArgumentParser(prog="clnet", description="Deep learning on any OpenCL device.")
    commands = parser.add_subparsers(dest="command", required=True)
    devices_ = commands.add_parser("devices", help="list every OpenCL device")
    devices_.add_argument("--check", action="store_true",
                          help="self-check each device (random numbers, GEMM, a training step against numpy) "
                               "and keep the verdict")
    devices_.set_defaults(run=_devices)
    cache_ = commands.add_parser("cache", help="show the folders where clnet and the drivers keep files")
    cache_.add_argument("--clear", action="store_true",
                        help="empty the drivers' and pyopencl's kernel caches (a damaged one crashes builds); "
                             "clnet's tuning and device checks stay")
    cache_.set_defaults(run=_cache)
    demo = commands.add_parser("demo", help="choose a device and run the seed article's examples on it")
    demo.add_argument("--device", default=None,
                      help="device spec (default: $CLNET_DEVICE, else the best GPU, else the CPU)")
    demo.set_defaults(run=_demo)
    tune_ = commands.add_parser("tune", help="find the fastest GEMM for a device and keep it")
    tune_.add_argument("--device", nargs="+", default=None,
                       help="device specs, or all (default: as for demo); each device is tuned on its own")
    tune_.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    tune_.add_argument("--quick", action="store_true", help="fewer candidates: under a minute on a 2-core CPU")
    tune_.add_argument("--no-progress", action="store_true", help="no progress bar")
    tune_.set_defaults(run=_tune)
    bench_ = commands.add_parser("bench", help="compare every OpenCL device, numpy and PyTorch; chart them")
    bench_.add_argument("--device", nargs="+", default=None, help="device specs (default: every device)")
    bench_.add_argument("--quick", action="store_true", help="smaller sizes: under a minute on a 2-core CPU")
    bench_.add_argument("--out", default=None,
                       help="folder for clnet-bench.json and clnet-bench.png (default: clnet's cache folder)")
    bench_.add_argument("--no-references", action="store_true", help="skip numpy and PyTorch")
    bench_.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench_.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    show_notes()
    try:
        return args.run(args)
    except ClnetError as exc:
        print(f"clnet: error: {exc}", file=sys.stderr)
        return 2
