"""Tuning GEMM for a device: `clnet tune` / `clnet.tune(ctx)`.

For the device and dtype, times real GEMMs of the shapes a training step uses (all three
products: x @ W.T, dZ.T @ x, dZ @ W) for two shape classes, small and large, with

  - clnet's tiled kernel for several tile shapes and work-group sizes, in this process, and
  - CLBlast with its own parameters and with candidate overrides of its Xgemm, XgemmDirect
    and GemmRoutine (the direct/indirect switch), in a worker process: CLBlast keeps an
    override for the rest of a process and has no way to undo it.

Every candidate's result is checked against numpy; a candidate that fails to build, exceeds the
device's limits or computes wrongly is skipped. The fastest correct candidate of each class
wins, and the result goes to $CLNET_CACHE_DIR/tuning.json, keyed by platform, device name and
driver version. Every new Context applies it; a corrupt or stale file is ignored with a warning.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyclblast
import pyopencl.array as cla

from . import blas
from .context import Context, on_open
from .device import DeviceInfo
from .paths import cache_dir
from .progress import Progress
from .tiled_gemm import TileParams

FORMAT = 1
FILE_NAME = "tuning.json"
WARMUP_SECONDS = 0.2
TUNING_ENV = "CLNET_TUNING"  # "off": new Contexts ignore the saved tuning

# (m, n, k, trans_a, trans_b): the forward product, the weight gradient and the input gradient
# of a 784 -> 512 layer at batch 256 (small), and of a 1024 -> 1024 layer at batch 1024 (large).
SHAPES = {
    "small": [(256, 512, 784, False, True), (512, 784, 256, True, False), (256, 784, 512, False, False)],
    "large": [(1024, 1024, 1024, False, True), (1024, 1024, 1024, True, False), (1024, 1024, 1024, False, False)],
}
QUICK_SHAPES = {
    "small": SHAPES["small"],
    "large": [(768, 768, 768, False, True), (768, 768, 768, True, False), (768, 768, 768, False, False)],
}
TILES = [TileParams(rows, local) for rows in (6, 4, 8) for local in (16, 8, 4, 32)]
QUICK_TILES = [TileParams(6, 16), TileParams(6, 8), TileParams(4, 16)]


def _xgemm(kwg, kwi, mdima, mdimc, mwg, ndimb, ndimc, nwg, sa, sb, strm, strn, vwm, vwn) -> dict:
    return dict(GEMMK=0, KREG=1, KWG=kwg, KWI=kwi, MDIMA=mdima, MDIMC=mdimc, MWG=mwg, NDIMB=ndimb,
                NDIMC=ndimc, NWG=nwg, SA=sa, SB=sb, STRM=strm, STRN=strn, VWM=vwm, VWN=vwn)


def _direct(wgd, mdimcd, ndimcd, mdimad, ndimbd, kwid, vwmd, vwnd, pada=1, padb=1) -> dict:
    return dict(WGD=wgd, MDIMCD=mdimcd, NDIMCD=ndimcd, MDIMAD=mdimad, NDIMBD=ndimbd, KWID=kwid,
                VWMD=vwmd, VWND=vwnd, PADA=pada, PADB=padb)


INDIRECT_FROM_64 = {"GemmRoutine": {"XGEMM_MIN_INDIRECT_SIZE": 64}}
# CLBlast candidates: {} is CLBlast's own choice; the others come from CLBlast's database
# entries for CPUs, with wider vectors for AVX2, and force the indirect kernel from size 64.
CLBLAST = [
    {},
    {"Xgemm": _xgemm(32, 2, 8, 8, 32, 8, 8, 64, 0, 0, 0, 0, 4, 4), **INDIRECT_FROM_64},
    {"Xgemm": _xgemm(32, 2, 32, 8, 128, 8, 8, 128, 1, 1, 1, 1, 2, 8), **INDIRECT_FROM_64},
    {"Xgemm": _xgemm(16, 2, 8, 8, 128, 8, 8, 128, 1, 1, 1, 0, 1, 8), **INDIRECT_FROM_64},
    {"Xgemm": _xgemm(32, 8, 16, 16, 64, 32, 32, 64, 0, 1, 1, 0, 1, 2), **INDIRECT_FROM_64},
    {"Xgemm": _xgemm(32, 2, 16, 16, 64, 16, 16, 64, 0, 0, 0, 0, 4, 4), **INDIRECT_FROM_64},
    {"XgemmDirect": _direct(32, 8, 8, 8, 8, 2, 4, 4), "GemmRoutine": {"XGEMM_MIN_INDIRECT_SIZE": 4096}},
]
QUICK_CLBLAST = [{}]


def tuning_path() -> Path:
    return cache_dir() / FILE_NAME


# -- measuring --------------------------------------------------------------------------------

def _operands(ctx, dtype, shape, seed):
    m, n, k, trans_a, trans_b = shape
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, size=(k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.uniform(-1, 1, size=(n, k) if trans_b else (k, n)).astype(dtype)
    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    return (cla.to_device(ctx.queue, a), cla.to_device(ctx.queue, b), cla.empty(ctx.queue, (m, n), dtype), expected)


def measure(ctx, dtype, shapes: dict, backend: str, repeats: int) -> dict:
    """{class: {"seconds": total over the class's shapes, "gflops": ...}} for the current
    settings of `backend`; raises ValueError when a result is wrong."""
    results = {}
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    for name, class_shapes in shapes.items():
        total, flops = 0.0, 0.0
        for i, shape in enumerate(class_shapes):
            a, b, c, expected = _operands(ctx, dtype, shape, seed=i)
            m, n, k, trans_a, trans_b = shape
            blas.gemm(ctx, a, b, c, trans_a=trans_a, trans_b=trans_b, backend=backend)  # builds
            error = np.abs(c.get() - expected).max() / max(np.abs(expected).max(), 1e-30)
            if not error < tolerance:
                raise ValueError(f"wrong result for {shape}: relative error {error:.2g}")
            times, started = [], time.perf_counter()
            # cores of a VM need about 0.2 s of steady load to reach full speed: warm up first
            while len(times) < repeats or time.perf_counter() - started < WARMUP_SECONDS:
                run_started = time.perf_counter()
                blas.gemm(ctx, a, b, c, trans_a=trans_a, trans_b=trans_b, backend=backend)
                ctx.finish()
                times.append(time.perf_counter() - run_started)
            total += min(times[-repeats:])  # the least disturbed run: this machine is shared
            flops += 2.0 * m * n * k
        results[name] = {"seconds": total, "gflops": flops / total / 1e9}
    return results


def _precision(dtype) -> int:
    return 32 if np.dtype(dtype) == np.float32 else 64


def _apply_clblast(device, dtype, overrides: dict) -> None:
    for kernel, params in overrides.items():
        pyclblast.override_parameters(device, kernel, _precision(dtype), params)
    if overrides:
        blas.clear_clblast_cache()


def worker(spec: dict) -> None:
    """Measure CLBlast candidates in this (child) process; one JSON line per candidate."""
    with Context(spec["device"]) as ctx:
        dtype = np.dtype(spec["dtype"])
        shapes = {name: [tuple(s) for s in class_shapes] for name, class_shapes in spec["shapes"].items()}
        for index, overrides in enumerate(spec["candidates"]):
            try:
                _apply_clblast(ctx.device, dtype, overrides)
                line = {"index": index, "result": measure(ctx, dtype, shapes, "clblast", spec["repeats"])}
            except Exception as exc:  # a candidate that fails to build or to run is skipped
                line = {"index": index, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(line), flush=True)


def _measure_clblast(ctx, dtype, shapes, candidates, repeats, bar: Progress) -> list[dict]:
    spec = {"device": ctx.info.index, "dtype": np.dtype(dtype).name, "shapes": shapes,
            "candidates": candidates, "repeats": repeats}
    results: list[dict] = [{"error": "the worker stopped before this candidate"} for _ in candidates]
    bar.show(f"CLBlast 1/{len(candidates)}: compiling its GEMM (about 20 s per candidate on a cold PoCL cache)")
    env = {**os.environ, "CLNET_LOG_LEVEL": "WARNING", TUNING_ENV: "off"}  # {} must mean CLBlast's own
    worker = subprocess.Popen([sys.executable, "-m", "clnet.tuning_worker"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    worker.stdin.write(json.dumps(spec))
    worker.stdin.close()
    for line in worker.stdout:
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        results[message["index"]] = message.get("result") or {"error": message.get("error")}
        done = message["index"] + 1
        bar.update(note=f"CLBlast {min(done + 1, len(candidates))}/{len(candidates)}: compiling and timing")
    worker.wait()
    return results


def _measure_tiles(ctx, dtype, shapes, tiles, repeats, passes, bar: Progress) -> list[dict]:
    """clnet's tile candidates, measured in `passes` rounds over all of them (a burst of load on
    this shared machine then spoils one round of one candidate, not the choice); the best round
    of each candidate counts."""
    settings = blas.settings(ctx, dtype)
    previous, best = settings.tiles, [None] * len(tiles)
    for round_ in range(passes):
        for i, tile in enumerate(tiles):
            bar.show(f"clnet tiles {tile.rows} rows, {tile.local} per group (round {round_ + 1}/{passes})")
            settings.tiles = tile
            try:
                result = measure(ctx, dtype, shapes, "clnet", repeats)
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            if best[i] is None or "error" in result:
                best[i] = result
            elif "error" not in best[i]:
                best[i] = {name: min(best[i][name], result[name], key=lambda r: r["seconds"]) for name in result}
            if round_ == passes - 1:
                bar.update()
    settings.tiles = previous
    return [{"backend": "clnet", "params": tile.as_dict(), **_as_result(result)} for tile, result in zip(tiles, best)]


def tune(ctx, dtype="float32", quick: bool = False, progress: bool = True, save: bool = True,
         tile_candidates: list[TileParams] | None = None, clblast_candidates: list[dict] | None = None,
         shapes: dict | None = None) -> dict:
    """Find the fastest correct GEMM for this device and dtype, save it, and apply it to ctx.

    quick: fewer candidates and smaller large shapes (under a minute on a 2-core PoCL CPU).
    tile_candidates, clblast_candidates, shapes: replace the built-in lists (SHAPES has the
    form {"small": [(m, n, k, trans_a, trans_b), ...], "large": [...]}).
    Returns the entry written to the tuning file.
    """
    dtype = ctx.real_dtype(dtype)
    shapes = shapes or (QUICK_SHAPES if quick else SHAPES)
    repeats = 2 if quick else 3
    tiles = tile_candidates if tile_candidates is not None else (QUICK_TILES if quick else TILES)
    clblast = clblast_candidates if clblast_candidates is not None else (QUICK_CLBLAST if quick else CLBLAST)
    candidates: list[dict] = []
    with Progress(len(tiles) + len(clblast), f"tuning {dtype.name} GEMM on {ctx.info.name}", progress) as bar:
        candidates += _measure_tiles(ctx, dtype, shapes, tiles, repeats, passes=1 if quick else 2, bar=bar)
        for overrides, result in zip(clblast, _measure_clblast(ctx, dtype, shapes, clblast, repeats, bar)):
            candidates.append({"backend": "clblast", "params": overrides, **_as_result(result)})
    entry = _choose(candidates, list(shapes), dtype)
    entry["numpy_gflops"] = _numpy_gflops(dtype, shapes)
    if save:
        _store(ctx.info, dtype, entry)
    apply(ctx, dtype, entry)
    return entry


def _as_result(result: dict) -> dict:
    return {"error": result["error"]} if "error" in result else {"classes": result}


def _choose(candidates: list[dict], classes: list[str], dtype) -> dict:
    valid = [c for c in candidates if "classes" in c]
    if not valid:
        errors = "; ".join(f"{c['backend']} {c['params']}: {c['error']}" for c in candidates)
        raise RuntimeError(f"no GEMM candidate built and computed correctly: {errors}")
    best = {name: min(valid, key=lambda c: c["classes"][name]["seconds"]) for name in classes}
    best_tiles = min((c for c in valid if c["backend"] == "clnet"),
                     key=lambda c: sum(c["classes"][n]["seconds"] for n in classes), default=None)
    best_clblast = min((c for c in valid if c["backend"] == "clblast"),
                       key=lambda c: sum(c["classes"][n]["seconds"] for n in classes), default=None)
    return {
        "format": FORMAT,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dtype": np.dtype(dtype).name,
        "backend": {name: best[name]["backend"] for name in classes},
        "clnet": best_tiles["params"] if best_tiles else asdict(TileParams()),
        "clblast": best_clblast["params"] if best_clblast else {},
        "gflops": {name: {backend: max(c["classes"][name]["gflops"] for c in valid if c["backend"] == backend)
                          for backend in {c["backend"] for c in valid}} for name in classes},
        "candidates": candidates,
    }


def _numpy_gflops(dtype, shapes: dict) -> dict:
    found = {}
    for name, class_shapes in shapes.items():
        total, flops = 0.0, 0.0
        for m, n, k, trans_a, trans_b in class_shapes:
            a = np.ones((k, m) if trans_a else (m, k), dtype)
            b = np.ones((n, k) if trans_b else (k, n), dtype)
            op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)
            op_a @ op_b
            started = time.perf_counter()
            op_a @ op_b
            total += time.perf_counter() - started
            flops += 2.0 * m * n * k
        found[name] = flops / total / 1e9
    return found


# -- the tuning file --------------------------------------------------------------------------

def load() -> dict:
    """The tuning file's device entries ({} when there is none, or it is corrupt: warned)."""
    path = tuning_path()
    if not path.exists():
        return {}
    try:
        content = json.loads(path.read_text())
        if not isinstance(content, dict) or content.get("format") != FORMAT or not isinstance(
                content.get("devices"), dict):
            raise ValueError(f"not a clnet tuning file of format {FORMAT}")
        return content["devices"]
    except (OSError, ValueError) as exc:
        warnings.warn(f"clnet: ignoring the tuning file {path}: {exc}. Run `clnet tune` to make a new one.",
                      stacklevel=3)
        return {}


def _store(info: DeviceInfo, dtype, entry: dict) -> None:
    path = tuning_path()
    devices = load() if path.exists() else {}
    devices.setdefault(info.key, {})[np.dtype(dtype).name] = entry
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"format": FORMAT, "devices": devices}, indent=1) + "\n")
    temporary.replace(path)  # atomic: a reader never sees half a file


def tuned_dtypes(info: DeviceInfo, devices: dict | None = None) -> list[str]:
    """The dtypes the tuning file holds for this device."""
    entries = (load() if devices is None else devices).get(info.key, {})
    return sorted(entries)


def apply(ctx, dtype, entry: dict) -> None:
    """Make ctx use a tuning entry: backends per class, tile parameters, CLBlast's overrides."""
    settings = blas.settings(ctx, dtype)
    settings.small, settings.large = entry["backend"]["small"], entry["backend"]["large"]
    settings.tiles = TileParams(**entry["clnet"])
    settings.tuned = True
    if "clblast" in entry["backend"].values():
        _apply_clblast(ctx.device, dtype, entry["clblast"])


def apply_saved(ctx) -> None:
    """On opening a Context: apply the saved tuning of its device, if there is a valid one."""
    if os.environ.get(TUNING_ENV, "").lower() == "off":
        return
    devices = load()
    entries = devices.get(ctx.info.key)
    if entries is None:
        stale = [key for key in devices if key.rsplit("|", 1)[0] == ctx.info.key.rsplit("|", 1)[0]]
        if stale:
            warnings.warn(f"clnet: ignoring GEMM tuning for {ctx.info.name} made with another driver "
                          f"({stale[0].rsplit('|', 1)[1]}, now {ctx.info.driver_version}); run `clnet tune` again.",
                          stacklevel=3)
        return
    for dtype, entry in entries.items():
        if dtype == "float64" and not ctx.info.fp64:
            continue
        try:
            if entry.get("format") != FORMAT:
                raise ValueError(f"format {entry.get('format')}, expected {FORMAT}")
            apply(ctx, dtype, entry)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            ctx.settings.pop(("gemm", dtype), None)
            warnings.warn(f"clnet: ignoring the {dtype} GEMM tuning of {ctx.info.name} in {tuning_path()}: {exc}",
                          stacklevel=3)


on_open(apply_saved)

