"""`clnet bench` and Context("fastest")."""

import json

import pytest

import clnet
from clnet.app import bench as benchmark
from clnet.app import cli
from clnet.runtime import fastest
from clnet.runtime.device import choose

from .conftest import TEST_DEVICE


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_quick_bench_fills_the_table_writes_json_and_png_and_names_the_fastest(cache, tmp_path, capsys):
    assert cli.main(["bench", "--quick", "--device", TEST_DEVICE, "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "clnet-bench.json").read_text())
    assert f"Wrote {tmp_path / 'clnet-bench.json'}" in out
    assert json.loads((cache / "fastest.json").read_text())["key"] == results["fastest"]
    names = [c["name"] for c in results["columns"]]
    device = results["columns"][0]
    with clnet.Context(TEST_DEVICE) as ctx:
        assert device["device"] == ctx.info.name and device["kind"] == "device" and "numpy" in names
        assert device["name"].startswith(ctx.info.name + " (")  # and its platform
    assert len(results["metrics"]) == 9  # 2 GEMM sizes, copy, launch, 2 random, init, 2 networks
    for metric in results["metrics"]:
        for name in names:
            value = metric["values"][name]
            if name in ("numpy", "PyTorch") and metric["name"].startswith("kernel launch") or \
                    name == "numpy" and metric["name"].startswith("Adam epoch"):  # not theirs to measure
                assert value is None
                continue
            assert value is not None and value > 0, (metric["name"], name)
        assert metric["name"] in out
    assert [m["training"] for m in results["metrics"]] == [False] * 7 + [True] * 2
    for key in ("date", "cpu", "cores"):
        assert results["machine"][key]
    assert {"pyopencl", "clblast", "numpy"} <= set(results["machine"]["versions"])
    assert device["driver"] and device["platform"]
    assert (tmp_path / "clnet-bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with clnet.Context("fastest") as fastest:
        assert fastest.info.key == device["key"] and "clnet bench" in fastest.reason


def test_bench_writes_to_the_cache_folder_by_default(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(benchmark.suite, "SUITES", {"quick": {"gemm": (64,), "copy": 1000, "random": 1000,
                                                              "networks": (), "repeats": 1, "init": False}})
    assert cli.main(["bench", "--quick", "--device", TEST_DEVICE, "--no-references", "--no-progress"]) == 0
    assert f"Wrote {cache / 'clnet-bench.json'}" in capsys.readouterr().out
    assert (cache / "clnet-bench.json").is_file() and list(tmp_path.iterdir()) == [cache]


def test_fastest_without_a_record_falls_back_with_a_warning(cache):
    with pytest.warns(UserWarning, match="no record of the fastest device"):
        with clnet.Context("fastest") as ctx:
            default = choose(None, clnet.devices(), environ={})[0]
            assert ctx.info.index == default.index and "without a usable benchmark" in ctx.reason


@pytest.mark.parametrize("content", ["{not json", '{"format": 1}',
                                     '{"format": 1, "key": 7, "date": "x", "source": "y"}',
                                     '{"format": 2, "key": "a", "date": "x", "source": "y"}'])
def test_fastest_with_a_corrupt_record_falls_back_with_a_warning(cache, content):
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "fastest.json").write_text(content)
    with pytest.warns(UserWarning, match="unreadable"):
        clnet.Context("fastest").close()


def test_fastest_device_no_longer_present(cache):
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "fastest.json").write_text(json.dumps({"format": 1, "key": "Gone|GPU 9000|1.0", "date": "2026",
                                                    "source": "clnet bench"}))
    with pytest.warns(UserWarning, match="not on this machine now"):
        clnet.Context("fastest").close()


def test_a_recorded_device_is_chosen(cache):
    with clnet.Context(TEST_DEVICE) as ctx:
        fastest.remember(ctx.info, "a test")
        chosen, reason = choose("fastest", clnet.devices())
        assert chosen.key == ctx.info.key and "the last a test" in reason


def test_fastest_is_the_best_geometric_mean_of_the_device_columns():
    columns = [{"name": "A", "kind": "device", "key": "a"}, {"name": "B", "kind": "device", "key": "b"},
               {"name": "numpy", "kind": "reference"}]
    metrics = [{"higher_is_better": True, "values": {"A": 100.0, "B": 50.0, "numpy": 1000.0}},
               {"higher_is_better": False, "values": {"A": 4.0, "B": 1.0, "numpy": 0.1}},
               {"higher_is_better": False, "values": {"A": 10.0, "B": 30.0, "numpy": 1.0}}]
    # A: 1, 1/4, 1 -> mean log -0.46; B: 1/2, 1, 1/3 -> mean log -0.60
    assert benchmark.fastest_column({"columns": columns, "metrics": metrics}) == "a"
    metrics[1]["values"]["A"] = 8.0  # A: 1, 1/8, 1 -> -0.69: now B
    assert benchmark.fastest_column({"columns": columns, "metrics": metrics}) == "b"


def test_fastest_is_the_device_that_trains_fastest_when_the_table_has_training():
    columns = [{"name": "A", "kind": "device", "key": "a"}, {"name": "B", "kind": "device", "key": "b"},
               {"name": "PyTorch", "kind": "reference"}]
    metrics = [{"name": "GEMM n=512", "higher_is_better": True, "values": {"A": 10.0, "B": 100.0}},
               {"name": "SGD epoch 784-512-10, batch 64", "higher_is_better": False, "training": True,
                "values": {"A": 2.0, "B": 3.0, "PyTorch": 1.0}},
               {"name": "Adam epoch 64-128-10, 45 x 32", "higher_is_better": False, "training": True,
                "values": {"A": 20.0, "B": 18.0, "PyTorch": 10.0}}]
    # training only: A: 1, 0.9 -> mean log -0.05; B: 2/3, 1 -> -0.20 (the GEMM row would make it B)
    assert benchmark.fastest_column({"columns": columns, "metrics": metrics}) == "a"
    metrics[2]["values"]["B"] = 12.0  # B: 2/3, 1 and A: 1, 0.6 -> A -0.26, B -0.20: now B
    assert benchmark.fastest_column({"columns": columns, "metrics": metrics}) == "b"
