"""`clnet bench` and Context("fastest")."""

import json

import pytest

import clnet
from clnet import benchmark, cli

from .conftest import TEST_DEVICE


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_quick_bench_fills_the_table_writes_json_and_png_and_names_the_fastest(cache, tmp_path, capsys):
    assert cli.main(["bench", "--quick", "--device", TEST_DEVICE, "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "clnet-bench.json").read_text())
    assert json.loads((cache / "bench.json").read_text()) == results
    names = [c["name"] for c in results["columns"]]
    device = results["columns"][0]
    with clnet.Context(TEST_DEVICE) as ctx:
        assert device["name"] == ctx.info.name and device["kind"] == "device" and "numpy" in names
    assert len(results["metrics"]) == 7  # 2 GEMM sizes, copy, 2 random, init, 1 network
    for metric in results["metrics"]:
        for name in names:
            value = metric["values"][name]
            assert value is not None and value > 0, (metric["name"], name)
        assert metric["name"] in out
    for key in ("date", "cpu", "cores"):
        assert results["machine"][key]
    assert {"pyopencl", "clblast", "numpy"} <= set(results["machine"]["versions"])
    assert device["driver"] and device["platform"]
    assert (tmp_path / "clnet-bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with clnet.Context("fastest") as fastest:
        assert fastest.info.name == device["name"] and "clnet bench" in fastest.reason


def test_fastest_without_a_benchmark_falls_back_with_a_warning(cache):
    with pytest.warns(UserWarning, match="no saved benchmark"):
        with clnet.Context("fastest") as ctx:
            default = clnet.device.choose(None, clnet.devices(), environ={})[0]
            assert ctx.info.index == default.index and "without a usable benchmark" in ctx.reason


@pytest.mark.parametrize("content", ["{not json", '{"format": 1}', '{"fastest": 7, "machine": {"date": "x"}}'])
def test_fastest_with_a_corrupt_benchmark_falls_back_with_a_warning(cache, content):
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "bench.json").write_text(content)
    with pytest.warns(UserWarning, match="unreadable"):
        clnet.Context("fastest").close()


def test_fastest_device_no_longer_present(cache):
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "bench.json").write_text(json.dumps({"fastest": "Gone|GPU 9000|1.0", "machine": {"date": "2026"}}))
    with pytest.warns(UserWarning, match="not on this machine now"):
        clnet.Context("fastest").close()


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
