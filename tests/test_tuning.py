"""GEMM tuning: the search, the file, and its use by new contexts."""

import json
import warnings

import numpy as np
import pyopencl.array as cla
import pytest

import clnet
from clnet.app import cli
from clnet.ops import blas
from clnet.ops.tiled_gemm import TileParams

from .conftest import TEST_DEVICE

SMALL_SHAPES = {"small": [(20, 24, 30, False, True), (24, 30, 20, True, False), (20, 30, 24, False, False)],
                "large": [(70, 64, 90, False, True), (64, 90, 70, True, False), (70, 90, 64, False, False)]}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path))
    return tmp_path


needs_clblast = pytest.mark.skipif(not blas.HAVE_CLBLAST, reason="pyclblast is not installed")


@needs_clblast
def test_quick_tune_writes_a_file_that_new_contexts_apply(cache, capsys):
    with clnet.Context(TEST_DEVICE) as ctx:
        entry = clnet.tune(ctx, "float32", quick=True, progress=False, shapes=SMALL_SHAPES,
                           tile_candidates=[TileParams(6, 8), TileParams(4, 4)], clblast_candidates=[{}])
    saved = json.loads((cache / "tuning.json").read_text())
    key = ctx.info.key
    assert saved["devices"][key]["float32"]["backend"] == entry["backend"]
    assert set(entry["backend"]) == {"small", "large"} and set(entry["backend"].values()) <= {"clnet", "clblast"}
    assert len(entry["candidates"]) == 3 and all("classes" in c for c in entry["candidates"])
    with clnet.Context(TEST_DEVICE) as fresh:
        settings = blas.settings(fresh, "float32")
        assert settings.tuned
        assert (settings.small, settings.large) == (entry["backend"]["small"], entry["backend"]["large"])
        assert settings.tiles == TileParams(**entry["clnet"])
        rng = np.random.default_rng(0)
        for trans_a in (False, True):
            for trans_b in (False, True):
                for m, n, k in ((33, 17, 65), (300, 300, 300)):  # a small and a large product
                    a = rng.normal(size=(k, m) if trans_a else (m, k)).astype(np.float32)
                    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(np.float32)
                    c = cla.empty(fresh.queue, (m, n), np.float32)
                    blas.gemm(fresh, cla.to_device(fresh.queue, a), cla.to_device(fresh.queue, b), c,
                              trans_a=trans_a, trans_b=trans_b)
                    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
                    np.testing.assert_allclose(c.get(), expected, rtol=1e-4, atol=1e-4)
    cli.main(["devices"])
    rows = [line for line in capsys.readouterr().out.splitlines() if f" {ctx.info.index} " in f" {line} "]
    assert len(rows) == 1 and "float32" in rows[0]  # the tuned device's row, wherever it is in the table


@needs_clblast
def test_candidates_that_fail_are_skipped(cache):
    broken_clblast = {"Xgemm": dict(GEMMK=0, KREG=1, KWG=32, KWI=2, MDIMA=7, MDIMC=7, MWG=32, NDIMB=8, NDIMC=8,
                                    NWG=64, SA=0, SB=0, STRM=0, STRN=0, VWM=4, VWN=4),
                      "GemmRoutine": {"XGEMM_MIN_INDIRECT_SIZE": 1}}
    with clnet.Context(TEST_DEVICE) as ctx:
        entry = clnet.tune(ctx, "float32", progress=False, shapes=SMALL_SHAPES,
                           tile_candidates=[TileParams(0, 8), TileParams(6, 8)], clblast_candidates=[broken_clblast])
    errors = [c for c in entry["candidates"] if "error" in c]
    assert [(c["backend"], c["params"]) for c in errors] == [("clnet", {"rows": 0, "local": 8, "width": None}),
                                                             ("clblast", broken_clblast)]
    assert entry["backend"] == {"small": "clnet", "large": "clnet"}
    assert entry["clnet"] == {"rows": 6, "local": 8, "width": None}


def test_no_candidate_at_all_is_an_error(cache):
    with clnet.Context(TEST_DEVICE) as ctx:
        with pytest.raises(RuntimeError, match="no GEMM candidate built and computed correctly"):
            clnet.tune(ctx, "float32", progress=False, shapes=SMALL_SHAPES, tile_candidates=[TileParams(0, 8)],
                       clblast_candidates=[])


def test_corrupt_file_is_ignored_with_a_warning(cache):
    (cache / "tuning.json").write_text('{"format": 1, "devices": {"trunc')
    with pytest.warns(UserWarning, match="ignoring the tuning file"):
        ctx = clnet.Context(TEST_DEVICE)
    with ctx:
        assert not blas.settings(ctx, "float32").tuned
        a = cla.to_device(ctx.queue, np.eye(3, dtype=np.float32))
        c = cla.empty(ctx.queue, (3, 3), np.float32)
        blas.gemm(ctx, a, a, c)
        np.testing.assert_array_equal(c.get(), np.eye(3))


def test_bad_entry_and_stale_driver_are_ignored_with_warnings(cache):
    info = clnet.Context(TEST_DEVICE).info
    key = info.key
    (cache / "tuning.json").write_text(json.dumps(
        {"format": 1, "devices": {key: {"float32": {"format": 1, "backend": {"small": "clnet"}}}}}))
    with pytest.warns(UserWarning, match="ignoring the float32 GEMM tuning"):
        with clnet.Context(TEST_DEVICE) as ctx:
            assert not blas.settings(ctx, "float32").tuned
    stale = key.rsplit("|", 1)[0] + "|0.0-older"
    (cache / "tuning.json").write_text(json.dumps({"format": 1, "devices": {stale: {"float32": {}}}}))
    with pytest.warns(UserWarning, match="made with another driver"):
        clnet.Context(TEST_DEVICE).close()


def test_tuning_can_be_switched_off(cache, monkeypatch):
    (cache / "tuning.json").write_text("not json")
    monkeypatch.setenv("CLNET_TUNING", "off")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clnet.Context(TEST_DEVICE).close()


@pytest.mark.parametrize("kind, native, widths", [("CPU", 8, {None}), ("CPU", 16, {None, 16}),
                                                  ("CPU", 4, {None, 4}), ("GPU", 1, {None}), ("GPU", 16, {None})])
def test_tile_candidates_follow_the_devices_native_vector_width(ctx, kind, native, widths):
    from dataclasses import replace

    from clnet.tuning import search

    info = replace(ctx.info, type=kind, native_float_width=native, native_double_width=max(native // 2, 1),
                   vendor="GenuineIntel")
    for dtype, scale in (("float32", 1), ("float64", 2)):
        tiles = search.candidate_tiles(info, dtype, quick=False)
        expected = {w if w is None else w // scale for w in widths}
        assert {t.width for t in tiles} == expected
        assert len(tiles) == len(set(tiles)) and TileParams() in tiles
        wider = [t for t in tiles if t.width and t.width * scale > 8]
        assert all(t.rows in search.ROWS["wide"] for t in wider)  # 512-bit: the rows AVX-512's registers hold


def test_pocl_on_amd_cpus_keeps_to_256_bit_vectors(ctx):
    """PoCL 3.0's compiler crashed (SIGSEGV) on every 512-bit GEMM tile for an AMD EPYC with
    AVX-512: there native_width caps at 256 bits, on Intel's CPUs it does not."""
    from dataclasses import replace

    amd = replace(ctx.info, type="CPU", platform="Portable Computing Language", vendor="AuthenticAMD",
                  native_float_width=16, native_double_width=8)
    assert (amd.native_width("float32"), amd.native_width("float64")) == (8, 4)
    intel = replace(amd, vendor="GenuineIntel")
    assert (intel.native_width("float32"), intel.native_width("float64")) == (16, 8)
    assert replace(amd, platform="Intel(R) OpenCL").native_width("float32") == 16


def test_the_gpu_kernels_tiles_are_searched_kept_and_applied(ctx, cache):
    """What `clnet tune` does on a GPU, on this device: each tile shape of the GPU kernel timed
    and checked, one that does not fit the device's limit skipped with the reason, the fastest
    kept under "local" and applied (the kernel's use stays the settings' choice of backend)."""
    from tqdm.auto import tqdm

    from clnet.ops.local_gemm import LocalTiles
    from clnet.tuning import search, store

    shapes = {"small": [(9, 20, 7, False, True)], "large": [(33, 17, 40, True, False)]}
    candidates = [LocalTiles(16, 16, 16, 4, 4), LocalTiles(32, 16, 16, 4, 4), LocalTiles(128, 64, 128, 1, 1)]
    with tqdm(disable=True) as bar:
        found = search._measure_local(ctx, np.dtype(np.float32), shapes, candidates, 1, bar)
    assert [c["params"] for c in found] == [t.as_dict() for t in candidates]
    assert all("classes" in c for c in found[:2])
    assert "8192 work-items per group: above this device's or kernel's limit" in found[2]["error"]
    entry = search._choose(found, list(shapes), np.float32)
    assert entry["local"] in [t.as_dict() for t in candidates[:2]] and entry["backend"]["small"] == "clnet_gpu"
    settings = blas.settings(ctx, np.float32)
    saved = dict(vars(settings))
    try:
        store.apply(ctx, np.float32, entry)
        assert settings.local == LocalTiles(**entry["local"]) and settings.small == "clnet_gpu"
    finally:
        vars(settings).update(saved)
