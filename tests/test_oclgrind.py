"""A second, strict OpenCL implementation: the portability suite (tests/test_portable.py) on
Oclgrind, which checks every memory access of every work-item, data races and API misuse. Any
report fails the test, with the report in the message. Oclgrind (Debian's oclgrind, which `make
test` installs) is registered for these runs only, through OCL_ICD_VENDORS."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ICD_LIBRARY = Path("/usr/lib/oclgrind/liboclgrind-rt-icd.so")
REPORT = re.compile(r"Oclgrind - |Invalid (read|write)|Data race|[Uu]ninitialized|out of bounds")

if not ICD_LIBRARY.exists():
    if os.environ.get("CI"):
        pytest.fail(f"Oclgrind is missing in CI ({ICD_LIBRARY}): `make test` installs the Debian package oclgrind",
                    pytrace=False)
    pytest.skip(f"Oclgrind is not installed ({ICD_LIBRARY}; Debian: apt-get install oclgrind)",
                allow_module_level=True)


def oclgrind_env(tmp_path: Path) -> dict:
    vendors = tmp_path / "vendors"
    vendors.mkdir(exist_ok=True)
    (vendors / "oclgrind.icd").write_text(f"{ICD_LIBRARY}\n")
    return {**os.environ, "OCL_ICD_VENDORS": str(vendors), "CLNET_TEST_DEVICE": "oclgrind",
            "OCLGRIND_CHECK_API": "1", "OCLGRIND_DATA_RACES": "1"}


def reports(output: str) -> list[str]:
    return [line for line in output.splitlines() if REPORT.search(line)]


@pytest.mark.parametrize("max_work_group", [None, 256, 64, 32])
def test_the_portable_suite_runs_clean_on_oclgrind(tmp_path, max_work_group):
    """As it is (a limit of 1024), and with the work-group limits of many GPUs and of kernels
    whose registers lower their own, down to 32, with clnet's own GEMM (pyclblast absent, as
    after `pip install clnet`; CLBlast's tuned kernels need 64)."""
    env = oclgrind_env(tmp_path)
    if max_work_group is not None:
        env.update(OCLGRIND_MAX_WGSIZE=str(max_work_group), CLNET_TEST_WITHOUT_CLBLAST="1")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                             str(HERE / "test_portable.py")], capture_output=True, text=True, timeout=900,
                            env=env, cwd=HERE.parent)
    output = result.stdout + result.stderr
    assert "portable suite on: Oclgrind Simulator" in output, output[-3000:]
    if max_work_group is not None:
        assert f"work-group limit {max_work_group}" in output, output[-3000:]
    found = reports(output)
    assert not found, "Oclgrind reported:\n" + "\n".join(found[:20]) + "\n\n" + output[-5000:]
    assert result.returncode == 0, output[-5000:]


PLANTED = textwrap.dedent("""\
    import sys, numpy as np, pyopencl.array as cla, clnet
    from clnet.runtime.programs import Programs, Templates, kernel_dir
    with clnet.Context("oclgrind") as ctx:
        programs = Programs(ctx.context, ctx.info, Templates([sys.argv[1], kernel_dir()]))
        k = programs.kernel("planted.cl", "one_past", dtype="float32")
        a = cla.zeros(ctx.queue, 7, np.float32)
        k(ctx.queue, (8,), None, a=a[:5], n=5)  # writes a[0..5]: one element past the view's end...
        b = cla.zeros(ctx.queue, 5, np.float32)
        k(ctx.queue, (8,), None, a=b, n=5)  # ...and one past the buffer's end
        ctx.finish()
    """)


def test_oclgrind_catches_a_planted_out_of_bounds_write(tmp_path):
    (tmp_path / "planted.cl").write_text(textwrap.dedent("""\
        <%include file="common.cl"/>
        ${kernel("one_past", "real *a, index_t n")} {
            const index_t i = get_global_id(0);
            if (i <= n) a_p[a_off + i] = 1;  // <= : the planted bug
        }
        """))
    result = subprocess.run([sys.executable, "-c", PLANTED, str(tmp_path)], capture_output=True, text=True,
                            timeout=120, env=oclgrind_env(tmp_path))
    assert "Invalid write" in result.stderr, result.stdout + result.stderr
