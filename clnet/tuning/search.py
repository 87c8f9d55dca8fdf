"""Tuning GEMM for a device: `clnet tune` / `clnet.tune(ctx)`.

For the device and dtype, times real GEMMs of the shapes a training step uses (all three
products: x @ W.T, dZ.T @ x, dZ @ W) for two shape classes, small and large, with

  - clnet's tiled kernel for several tile shapes and work-group sizes, in this process,
  - on devices other than CPUs, clnet's GPU kernel (ops/local_gemm.py) for each of its tile
    shapes that the device runs, in this process, and
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
from dataclasses import asdict

import numpy as np
import pyopencl.array as cla
from tqdm.auto import tqdm

from ..ops import blas, local_gemm
from ..ops.tiled_gemm import TileParams
from ..runtime.context import Context
from .store import FORMAT, TUNING_ENV, apply, apply_clblast, store

WARMUP_SECONDS = 0.2

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
# Tile rows and work-group sizes searched for each vector width: 256-bit vectors (the default, width
# None) and the device's native width where that differs (AVX-512's 512 bits: more rows fit its 32
# registers; SSE's 128). Intel's runtime and PoCL on the same AVX2 cores both report 256 bits.
ROWS = {"narrow": (6, 4, 8), "wide": (12, 8, 4, 14)}
LOCALS = {"narrow": (16, 8, 4, 32), "wide": (16, 4)}
QUICK = {"narrow": [(6, 16), (6, 8), (4, 16)], "wide": [(12, 16), (8, 16), (4, 16)]}
TILES = [TileParams(rows, local) for rows in ROWS["narrow"] for local in LOCALS["narrow"]]
QUICK_TILES = [TileParams(rows, local) for rows, local in QUICK["narrow"]]


def candidate_tiles(info, dtype, quick: bool) -> list[TileParams]:
    """clnet's tile candidates for a device: the 256-bit ones, and on CPUs whose native vectors are
    wider or narrower (CL_DEVICE_NATIVE_VECTOR_WIDTH_*), the same search at the native width."""
    dtype = np.dtype(dtype)
    default = 32 // dtype.itemsize
    native = info.native_width(dtype)
    tiles = list(QUICK_TILES if quick else TILES)
    if info.type == "CPU" and native != default and native >= 16 // dtype.itemsize:
        kind = "wide" if native > default else "narrow"
        pairs = QUICK[kind] if quick else [(r, loc) for r in ROWS[kind] for loc in LOCALS[kind]]
        tiles += [TileParams(rows, local, native) for rows, local in pairs]
    return tiles


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


def worker(spec: dict) -> None:
    """Measure CLBlast candidates in this (child) process; one JSON line per candidate."""
    with Context(spec["device"]) as ctx:
        dtype = np.dtype(spec["dtype"])
        shapes = {name: [tuple(s) for s in class_shapes] for name, class_shapes in spec["shapes"].items()}
        for index, overrides in enumerate(spec["candidates"]):
            try:
                apply_clblast(ctx.device, dtype, overrides)
                line = {"index": index, "result": measure(ctx, dtype, shapes, "clblast", spec["repeats"])}
            except Exception as exc:  # a candidate that fails to build or to run is skipped
                line = {"index": index, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(line), flush=True)


def _measure_clblast(ctx, dtype, shapes, candidates, repeats, bar: tqdm) -> list[dict]:
    spec = {"device": ctx.info.index, "dtype": np.dtype(dtype).name, "shapes": shapes,
            "candidates": candidates, "repeats": repeats}
    results: list[dict] = [{"error": "the worker stopped before this candidate"} for _ in candidates]
    bar.set_postfix_str(f"CLBlast 1/{len(candidates)}: compiling its GEMM "
                        "(about 20 s per candidate on a cold PoCL cache)")
    env = {**os.environ, "CLNET_LOG_LEVEL": "WARNING", TUNING_ENV: "off"}  # {} must mean CLBlast's own
    worker = subprocess.Popen([sys.executable, "-m", "clnet.tuning.worker"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    worker.stdin.write(json.dumps(spec))
    worker.stdin.close()
    for line in worker.stdout:
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        results[message["index"]] = message.get("result") or {"error": message.get("error")}
        done = message["index"] + 1
        bar.set_postfix_str(f"CLBlast {min(done + 1, len(candidates))}/{len(candidates)}: compiling and timing",
                            refresh=False)
        bar.update()
    worker.wait()
    return results


def _measure_local(ctx, dtype, shapes, candidates, repeats, bar: tqdm) -> list[dict]:
    """The GPU kernel's tile candidates that fit the device, each timed once (GPUs are not the
    shared 2-core machine whose bursts the CPU search's repeated rounds absorb)."""
    settings = blas.settings(ctx, dtype)
    previous, found = settings.local, []
    for tiles in candidates:
        bar.set_postfix_str(f"clnet GPU tiles {tiles.tm}x{tiles.tn}x{tiles.tk}, {tiles.wm}x{tiles.wn} per item")
        try:
            if not local_gemm.fits(ctx, dtype, tiles):
                raise ValueError(f"{tiles.items} work-items per group: above this device's or kernel's limit")
            settings.local = tiles
            result = measure(ctx, dtype, shapes, "clnet_gpu", repeats)
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        found.append({"backend": "clnet_gpu", "params": tiles.as_dict(), **_as_result(result)})
        bar.update()
    settings.local = previous
    return found


def _measure_tiles(ctx, dtype, shapes, tiles, repeats, passes, bar: tqdm) -> list[dict]:
    """clnet's tile candidates, measured in `passes` rounds over all of them (a burst of load on
    this shared machine then spoils one round of one candidate, not the choice); the best round
    of each candidate counts."""
    settings = blas.settings(ctx, dtype)
    previous, best = settings.tiles, [None] * len(tiles)
    for round_ in range(passes):
        for i, tile in enumerate(tiles):
            bar.set_postfix_str(f"clnet tiles {tile.rows} rows, {tile.local} per group (round {round_ + 1}/{passes})")
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
    tiles = tile_candidates if tile_candidates is not None else candidate_tiles(ctx.info, dtype, quick)
    clblast = clblast_candidates if clblast_candidates is not None else (QUICK_CLBLAST if quick else CLBLAST)
    clblast = clblast if blas.HAVE_CLBLAST else []  # without pyclblast only clnet's kernels are measured
    # the GPU kernel where it is meant to run; CPUs keep the register tiles (RESULTS.md, issue 25)
    local = [] if ctx.info.type == "CPU" else list(local_gemm.CANDIDATES[:3] if quick else local_gemm.CANDIDATES)
    candidates: list[dict] = []
    with tqdm(total=len(tiles) + len(local) + len(clblast), desc=f"tuning {dtype.name} GEMM on {ctx.info.name}",
              disable=not progress) as bar:
        candidates += _measure_tiles(ctx, dtype, shapes, tiles, repeats, passes=1 if quick else 2, bar=bar)
        candidates += _measure_local(ctx, dtype, shapes, local, repeats, bar)
        for overrides, result in zip(clblast, _measure_clblast(ctx, dtype, shapes, clblast, repeats, bar)):
            candidates.append({"backend": "clblast", "params": overrides, **_as_result(result)})
    entry = _choose(candidates, list(shapes), dtype)
    entry["numpy_gflops"] = _numpy_gflops(dtype, shapes)
    if save:
        store(ctx.info, dtype, entry)
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
    best_local = min((c for c in valid if c["backend"] == "clnet_gpu"),
                     key=lambda c: sum(c["classes"][n]["seconds"] for n in classes), default=None)
    return {
        "format": FORMAT,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dtype": np.dtype(dtype).name,
        "backend": {name: best[name]["backend"] for name in classes},
        "clnet": best_tiles["params"] if best_tiles else asdict(TileParams()),
        "clblast": best_clblast["params"] if best_clblast else {},
        **({"local": best_local["params"]} if best_local else {}),
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
