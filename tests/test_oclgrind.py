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


GEMM_LOADS = textwrap.dedent("""\
    import sys, numpy as np, pyopencl.array as cla, clnet
    from clnet.ops import blas
    with clnet.Context("oclgrind") as ctx:
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=(128, 128)).astype(np.float32), rng.normal(size=(128, 128)).astype(np.float32)
        c = cla.zeros(ctx.queue, (128, 128), np.float32)
        blas.gemm(ctx, cla.to_device(ctx.queue, a), cla.to_device(ctx.queue, b), c, backend=sys.argv[1])
        print("largest error", np.abs(c.get() - a.astype(np.float64) @ b).max())
    """)


def kernel_counts(output: str) -> dict[str, str]:
    """Oclgrind's instruction counts (OCLGRIND_INST_COUNTS=1), the block of lines of each kernel."""
    blocks = re.split(r"Instructions executed for kernel '(\w+)':", output)
    return dict(zip(blocks[1::2], blocks[2::2]))


def global_bytes_loaded(counts: str) -> int:
    """Bytes a kernel loaded from global memory: Oclgrind's `load global` lines, and its vloadN
    builtin calls, which it counts as calls (`_Z6vload4mPU3AS1Kf`: 4 floats from global memory)."""
    loaded = sum(int(n) for n in re.findall(r"load global \((\d+) bytes\)", counts))
    for calls, lanes, element in re.findall(r"(\d+) - call _Z\d+vload(\d+)mPU3AS1K([fd])", counts):
        loaded += int(calls) * int(lanes) * (4 if element == "f" else 8)
    return loaded


@pytest.mark.parametrize("max_work_group, most", [(None, 0.07), (64, 0.07), (32, 0.1)])
def test_the_gpu_gemm_loads_little_from_global_memory_and_nothing_from_scratch(tmp_path, max_work_group, most):
    """Issue 25: a float32 128 x 128 x 128 product through clnet's GPU kernel loads at most 0.1
    bytes from global memory per flop (0.0625 with 64 x 64 tiles; the CPU kernel, shaped for
    registers and caches, loads 0.47 there), uses no private arrays (no scratch memory), and
    equals numpy; whatever the work-group limit."""
    env = {**oclgrind_env(tmp_path), "OCLGRIND_INST_COUNTS": "1"}
    if max_work_group is not None:
        env["OCLGRIND_MAX_WGSIZE"] = str(max_work_group)
    result = subprocess.run([sys.executable, "-c", GEMM_LOADS, "clnet_gpu"], capture_output=True, text=True,
                            timeout=300, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    counts = kernel_counts(output)["gemm_local"]
    loaded = global_bytes_loaded(counts)
    # every element of A and B is loaded at least once: 2 * 128 * 128 floats
    assert 2 * 128 * 128 * 4 <= loaded <= most * 2 * 128**3, counts
    assert "private" not in counts and "alloca" not in counts, counts
    assert float(re.search(r"largest error (\S+)", output).group(1)) < 1e-4
    cpu = subprocess.run([sys.executable, "-c", GEMM_LOADS, "clnet"], capture_output=True, text=True, timeout=300,
                         env=env)
    cpu_loaded = global_bytes_loaded(kernel_counts(cpu.stdout + cpu.stderr)["gemm_tile"])
    assert cpu_loaded > 4 * loaded  # what the GPU kernel is for
