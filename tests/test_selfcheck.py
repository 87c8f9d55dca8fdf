"""The device self-check (issue 25): it passes on a sound device, catches a device whose kernels
are patched to compute wrong values, keeps the verdict per device and driver, and a device that
failed is shown as such and never chosen by default."""

import dataclasses
import warnings

import pytest

import clnet
from clnet.app import cli, selfcheck
from clnet.runtime import checks, device
from clnet.runtime.programs import Templates, kernel_dir

from . import reference as ref
from .conftest import TEST_DEVICE


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache folder of this test's own: the verdicts it stores go nowhere else."""
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_numpy_references_are_the_tests_own():
    """selfcheck's references (in the package) agree with the tests' oracles, written separately."""
    import numpy as np

    counters = np.array([[1, 2, 3, 4], [0xFFFFFFFF, 0, 7, 9]], np.uint32)
    keys = np.array([[5, 6], [0xFFFFFFFF, 1]], np.uint32)
    np.testing.assert_array_equal(selfcheck.philox4x32_10(counters, keys), ref.philox4x32_10(counters, keys))
    np.testing.assert_allclose(selfcheck.normal_reference(77, 1001), ref.normal(77, 0, 1001, np.float32), rtol=1e-12)


def test_a_sound_device_passes(ctx):
    verdict = selfcheck.check(ctx)
    assert verdict["passed"] and verdict["failed"] == []
    assert verdict["checks"] == {"philox": "ok", "normal": "ok", "gemm": "ok", "training": "ok"}
    assert verdict["driver"] == ctx.info.driver_version and verdict["device"] == ctx.info.name


def broken_kernels(folder):
    """clnet's kernels with a wrong Weyl constant in Philox and 0.001 added by both GEMM kernels."""
    folder.mkdir()
    for source in kernel_dir().glob("*.cl"):
        text = source.read_text()
        patched = (text.replace("#define PHILOX_W0 0x9E3779B9u", "#define PHILOX_W0 0x9E3779BAu")
                   .replace("v0 = alpha * tile[2 * r]", "v0 = alpha * tile[2 * r] + (real)0.001")
                   .replace("real v = alpha * acc", "real v = (real)0.001 + alpha * acc"))
        (folder / source.name).write_text(patched)
    return folder


def test_a_deliberately_broken_device_fails_and_is_shown_and_avoided(tmp_path, own_cache, capsys):
    with clnet.Context(TEST_DEVICE, templates=Templates([broken_kernels(tmp_path / "kernels")])) as broken:
        verdict = selfcheck.check(broken)
        info = broken.info
        uses_clblast = clnet.ops.blas.settings(broken, "float32").large == "clblast"
    assert not verdict["passed"]
    assert verdict["checks"]["philox"].startswith("known-answer vector 0: got ")
    assert verdict["checks"]["normal"].startswith("normal number ")
    if not uses_clblast:  # CLBlast's GEMM is not clnet's to patch
        assert "off by 0.001" in verdict["checks"]["gemm"]
    checks.store(info, verdict)
    assert checks.failures(info)[0].startswith("philox: known-answer vector 0")
    assert checks.describe(dataclasses.replace(info, driver_version="another")) == "-"  # a new driver: unchecked

    assert cli.main(["devices"]) == 0
    shown = capsys.readouterr().out
    assert "FAILED: philox: known-answer vector 0" in shown and "never chosen by default" in shown

    others = [dataclasses.replace(info, index="9:0", name="a sound twin", driver_version="x")]
    chosen, reason = device.choose(None, [info, *others], environ={})
    assert chosen.name == "a sound twin" and "1 failed their self-check" in reason
    with pytest.raises(clnet.DeviceNotFoundError, match="Every OpenCL device failed its self-check"):
        device.choose(None, [info], environ={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen, reason = device.choose(info.index, [info], environ={})  # named: used, with a warning
    assert chosen is info and "which failed its self-check" in reason
    assert any("failed its self-check: philox: known-answer vector 0" in str(w.message) for w in caught)


def test_check_device_keeps_a_passing_verdict(own_cache):
    verdict = clnet.check_device(TEST_DEVICE)
    assert verdict["passed"]
    with clnet.Context(TEST_DEVICE) as ctx:
        assert checks.describe(ctx.info) == "passed" and checks.failures(ctx.info) is None
