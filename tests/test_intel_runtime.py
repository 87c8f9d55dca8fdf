"""A third OpenCL implementation: Intel's CPU runtime from pip (`intel-opencl-rt`, the `intel`
extra, x86-64 only), which clnet registers for its own process (clnet/runtime/drivers.py). The
portability suite runs on it, training on it equals training on PoCL, and `clnet devices` lists
both CPU devices with no variable set by hand. Intel's runtime runs in child processes only: its
worker threads spin after kernels and would slow the PoCL tests of this process."""

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import clnet
from clnet.runtime import drivers

HERE = Path(__file__).resolve().parent
LIBRARY = drivers.installed_library("intel-opencl-rt", "libintelocl.so")

needs_intel = pytest.mark.skipif(LIBRARY is None, reason="Intel's OpenCL runtime is not installed "
                                                          "(pip install 'clnet[intel]', x86-64 Linux)")
if LIBRARY is None and os.environ.get("CI") and platform.machine() == "x86_64" and sys.platform == "linux":
    pytest.fail("Intel's OpenCL runtime is missing in CI: `make test` installs clnet's intel extra", pytrace=False)


def plain_env(**extra) -> dict:
    """This environment as a user's shell would have it: no vendors folder set by hand or by clnet."""
    env = {k: v for k, v in os.environ.items() if k not in ("OCL_ICD_VENDORS", drivers.SWITCH_ENV)}
    return {**env, **extra}


@needs_intel
def test_the_portable_suite_passes_on_intels_runtime():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                             str(HERE / "test_portable.py")], capture_output=True, text=True, timeout=900,
                            env=plain_env(CLNET_TEST_DEVICE="intel"), cwd=HERE.parent)
    output = result.stdout + result.stderr
    assert "(Intel(R) OpenCL)" in output, output[-3000:]  # test_the_device_is_named's line
    assert result.returncode == 0, output[-5000:]


TRAIN = textwrap.dedent("""\
    import json, sys, numpy as np, clnet
    rng = np.random.default_rng(4)
    x, labels = rng.normal(size=(37, 6)), rng.integers(0, 3, 37)
    found = {}
    with clnet.Context(sys.argv[1]) as ctx:
        for dtype in ("float32", "float64"):
            net = clnet.InferenceNetwork(ctx, 6, [clnet.FullyConnected(9, "tanh", dropout=0.25),
                                                  clnet.FullyConnected(3, "softmax")], dtype=dtype, seed=3)
            history = net.fit(x, labels, "cross_entropy", epochs=3, batch_size=8, optimizer=clnet.Adam(0.01),
                              seed=5, progress=False)
            found[dtype] = {"cost": list(history), "weights": [p.tolist() for layer in net.layers
                                                               for p in (layer.weights.get(), layer.bias.get())],
                            "platform": ctx.info.platform}
    print(json.dumps(found))
    """)


def train_on(spec: str) -> dict:
    result = subprocess.run([sys.executable, "-c", TRAIN, spec], capture_output=True, text=True, timeout=300,
                            env=plain_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@needs_intel
def test_training_on_intels_runtime_equals_training_on_pocl():
    intel, pocl = train_on("intel"), train_on("pocl")
    assert intel["float32"]["platform"] == "Intel(R) OpenCL" and "Portable" in pocl["float32"]["platform"]
    for dtype, tolerance in (("float32", {"rtol": 1e-4, "atol": 1e-5}), ("float64", {"rtol": 1e-10, "atol": 1e-12})):
        np.testing.assert_allclose(intel[dtype]["cost"], pocl[dtype]["cost"], **tolerance)
        for a, b in zip(intel[dtype]["weights"], pocl[dtype]["weights"], strict=True):
            np.testing.assert_allclose(np.array(a), np.array(b), **tolerance)


def clnet_devices(env: dict) -> str:
    result = subprocess.run([sys.executable, "-m", "clnet", "devices"], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@needs_intel
def test_clnet_devices_lists_both_cpu_implementations_with_nothing_set_by_hand():
    listed = clnet_devices(plain_env())
    assert "Intel(R) OpenCL" in listed and "Portable Computing Language" in listed, listed
    assert "Intel(R) OpenCL" not in clnet_devices(plain_env(**{drivers.SWITCH_ENV: "0"}))


@needs_intel
def test_a_users_own_vendors_folder_is_still_read(tmp_path):
    oclgrind = Path("/usr/lib/oclgrind/liboclgrind-rt-icd.so")
    if not oclgrind.exists():
        pytest.skip("needs Oclgrind (Debian's oclgrind) as the user's own driver")
    (tmp_path / "mine.icd").write_text(f"{oclgrind}\n")
    listed = clnet_devices(plain_env(OCL_ICD_VENDORS=str(tmp_path)))
    assert "Oclgrind" in listed and "Intel(R) OpenCL" in listed and "Portable Computing Language" in listed, listed


# -- the registration itself, on folders of this test's own (no loader involved) ---------------

@pytest.fixture
def fake_intel(tmp_path, monkeypatch):
    library = tmp_path / "venv" / "lib" / "libintelocl.so"
    library.parent.mkdir(parents=True)
    library.write_text("")
    monkeypatch.setattr(drivers, "installed_library", lambda dist, name: library if name == library.name else None)
    monkeypatch.setattr(drivers, "registered", {})
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path / "cache"))
    return library


def icds(folder: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in Path(folder).glob("*.icd")}


def test_registration_keeps_the_system_drivers(fake_intel, tmp_path, monkeypatch):
    system = tmp_path / "etc-vendors"
    system.mkdir()
    (system / "nvidia.icd").write_text("libnvidia-opencl.so.1\n")
    monkeypatch.setattr(drivers, "SYSTEM_VENDORS", system)
    environ = {}
    assert drivers.register(environ) == [fake_intel]
    assert icds(environ["OCL_ICD_VENDORS"]) == {"nvidia.icd": "libnvidia-opencl.so.1\n",
                                                "clnet-libintelocl.icd": f"{fake_intel}\n"}
    assert drivers.registered == {"Intel(R) OpenCL": fake_intel}
    again = {}
    drivers.register(again)  # the same folder, made once
    assert again == environ


@pytest.mark.parametrize("form", ["folder", "icd file", "library"])
def test_registration_keeps_a_users_own_setting(fake_intel, tmp_path, form):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "gpu.icd").write_text("/opt/gpu/libgpu.so\n")
    setting = {"folder": folder, "icd file": folder / "gpu.icd", "library": "/opt/gpu/libgpu.so"}[form]
    environ = {"OCL_ICD_VENDORS": str(setting)}
    drivers.register(environ)
    made = icds(environ["OCL_ICD_VENDORS"])
    assert "/opt/gpu/libgpu.so\n" in made.values() and f"{fake_intel}\n" in made.values() and len(made) == 2


def test_a_driver_the_loader_already_reads_is_left_alone(fake_intel, tmp_path):
    (tmp_path / "intel.icd").write_text("/somewhere/else/libintelocl.so.2026\n")
    environ = {"OCL_ICD_VENDORS": str(tmp_path)}
    assert drivers.register(environ) == [] and environ == {"OCL_ICD_VENDORS": str(tmp_path)}
    assert drivers.register({drivers.SWITCH_ENV: "0"}) == []


def test_a_registered_driver_that_does_not_load_is_named(monkeypatch, caplog):
    monkeypatch.setattr(drivers, "registered", {"No Such Platform": Path("/nowhere/libmissing.so")})
    with pytest.warns(UserWarning, match=r"/nowhere/libmissing.so.*did not load.*OCL_ICD_DEBUG=7"):
        assert clnet.devices()
