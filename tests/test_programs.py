"""Kernel programs: rendering, building, caching, and the errors when either fails."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyopencl as cl
import pyopencl.array as cla
import pytest

import clnet
from clnet.ops import memory
from clnet.runtime.programs import Programs, Templates, kernel_dir

from .conftest import TEST_DEVICE


@pytest.fixture
def templates(tmp_path):
    (tmp_path / "undefined.cl").write_text(textwrap.dedent("""\
        <%include file="common.cl"/>
        ${kernel("k", "real *a")} { a_p[a_off] = ${not_given}; }
        """))
    (tmp_path / "broken.cl").write_text(textwrap.dedent("""\
        <%include file="common.cl"/>
        ${kernel("k", "real *a")} { a_p[a_off] = undeclared_thing + 1; }
        """))
    (tmp_path / "good.cl").write_text(textwrap.dedent("""\
        <%include file="common.cl"/>
        ${kernel("twice", "real *a, index_t n")} {
            const index_t i = get_global_id(0);
            if (i < n) a_p[a_off + i] *= (real)${factor};
        }
        """))
    return Templates([tmp_path, kernel_dir()])


def test_kernels_folder_is_found():
    assert (kernel_dir() / "common.cl").is_file()


def test_undefined_template_variable_is_an_error(ctx, templates):
    programs = Programs(ctx.context, ctx.info, templates)
    with pytest.raises(clnet.TemplateError, match="undefined.cl.*not_given"):
        programs.program("undefined.cl", dtype="float32")


def test_unknown_dtype_in_template_is_an_error(ctx):
    with pytest.raises(clnet.TemplateError, match="dtype must be 'float32' or 'float64'"):
        Templates().render("memory.cl", {"dtype": "int32"})


def test_unknown_template_lists_the_known_ones(ctx):
    with pytest.raises(clnet.TemplateError, match="memory.cl"):
        ctx.kernel("nonexistent.cl", "k", dtype="float32")


def test_build_failure_carries_log_and_saved_source(ctx, templates, tmp_path, monkeypatch):
    monkeypatch.setenv("CLNET_CACHE_DIR", str(tmp_path / "cache"))
    programs = Programs(ctx.context, ctx.info, templates)
    with pytest.raises(clnet.KernelBuildError) as err:
        programs.program("broken.cl", dtype="float32")
    error = err.value
    assert "undeclared_thing" in error.log
    assert "broken.cl" in str(error) and "'dtype': 'float32'" in str(error) and error.log.strip() in str(error)
    saved = open(error.source_path).read()
    assert "undeclared_thing + 1" in saved and "typedef float real;" in saved


def test_kernel_is_built_once_and_reused(ctx, templates):
    programs = Programs(ctx.context, ctx.info, templates)
    first = programs.kernel("good.cl", "twice", dtype=np.float32, factor=2)
    assert programs.kernel("good.cl", "twice", dtype="float32", factor=2) is first
    assert programs.program("good.cl", factor=2, dtype=np.dtype("float32")) is programs.program(
        "good.cl", dtype="float32", factor=2)
    assert programs.kernel("good.cl", "twice", dtype="float32", factor=3) is not first
    a = cla.to_device(ctx.queue, np.arange(4, dtype=np.float32))
    first(ctx.queue, (4,), None, a=a, n=4)
    np.testing.assert_array_equal(a.get(), [0, 2, 4, 6])
    with pytest.raises(clnet.TemplateError, match="declares no kernel 'thrice' \\(declared: twice\\)"):
        programs.kernel("good.cl", "thrice", dtype="float32", factor=2)


def test_kernels_take_their_arguments_by_declared_name_only(ctx, templates):
    """The signature is declared once, in the template: Python binds arguments by its names, so an
    argument cannot be passed in the wrong place, and a wrong one fails loudly."""
    twice = Programs(ctx.context, ctx.info, templates).kernel("good.cl", "twice", dtype="float32", factor=2)
    assert twice.signature() == "twice(__global real *a_p, const index_t a_off, const index_t n)"
    a = cla.to_device(ctx.queue, np.arange(6, dtype=np.float32))
    twice(ctx.queue, (2,), None, n=2, a=a[3:5])  # any keyword order; the view's offset goes with it
    np.testing.assert_array_equal(a.get(), [0, 1, 2, 6, 8, 5])
    with pytest.raises(TypeError, match="positional"):
        twice(ctx.queue, (2,), None, a, 2)
    with pytest.raises(TypeError, match=r"missing \['n'\], unknown \['size'\]"):
        twice(ctx.queue, (2,), None, a=a, size=2)
    with pytest.raises(TypeError, match=r"missing \['a'\]"):
        twice(ctx.queue, (2,), None, n=2)
    with pytest.raises(TypeError, match="'a' must hold float32, got float64"):
        twice(ctx.queue, (2,), None, a=cla.zeros(ctx.queue, 2, np.float64), n=2)
    with pytest.raises(TypeError, match="'a' must be a device array, got ndarray"):
        twice(ctx.queue, (2,), None, a=np.zeros(2, np.float32), n=2)


def test_swapped_arrays_of_one_type_are_bound_by_name(ctx):
    """copy(src, dst): passing dst first changes nothing, where a positional call would copy backwards."""
    src = cla.to_device(ctx.queue, np.arange(9, dtype=np.float32))
    dst = cla.zeros(ctx.queue, 9, np.float32)
    copy = ctx.kernel("memory.cl", "copy", dtype="float32")
    copy(ctx.queue, (64,), (64,), dst=dst, n=9, src=src)
    np.testing.assert_array_equal(dst.get(), np.arange(9))


def test_local_sizes_are_halved_to_the_kernels_limit(ctx, monkeypatch):
    """Every launch passes through Kernel.work_group: with this kernel's limit set to 8 work-items
    (4 along the second dimension), sizes are halved, largest dimension first, and the launch
    computes the same numbers; an odd size that cannot be halved to the limit is named."""
    copy = ctx.kernel("memory.cl", "copy", dtype="float32")
    most, per_dimension = copy.limits(ctx.queue.device)
    assert most == min(ctx.info.max_work_group_size, copy.cl_kernel.get_work_group_info(
        cl.kernel_work_group_info.WORK_GROUP_SIZE, ctx.queue.device))
    assert copy.preferred_multiple(ctx.queue.device) >= 1
    monkeypatch.setattr(copy, "_limits", (8, (8, 4, 1)))
    monkeypatch.setattr(copy, "_fitted", {})  # sizes fitted to the real limits
    device = ctx.queue.device
    assert copy.work_group(device, (64,)) == (8,)
    assert copy.work_group(device, (8, 8)) == (2, 4)  # 4 along dimension 1, then 8 work-items in all
    assert copy.work_group(device, (2, 2)) == (2, 2) and copy.work_group(device, None) is None
    assert copy.work_group(device, (24,)) == (6,)  # halved while above the limit, even if not a power of 2
    with pytest.raises(ValueError, match=r"kernel copy: a work-group of \(9,\) work-items cannot be halved to "
                                         r"this kernel's limit on .*\(8 work-items"):
        copy.work_group(device, (9,))
    src = cla.to_device(ctx.queue, np.arange(100, dtype=np.float32))
    dst = cla.zeros(ctx.queue, 100, np.float32)
    copy(ctx.queue, (128,), (64,), dst=dst, n=100, src=src)  # runs as 16 groups of 8
    np.testing.assert_array_equal(dst.get(), np.arange(100))
    assert copy._fitted[(64,)] == (8,)


@pytest.mark.parametrize("declaration, message", [
    ("half x", "cannot read the parameter 'half x'"),
    ("real *a, index_t a", "declares a parameter name twice"),
    ("real", "cannot read the parameter 'real'"),
])
def test_bad_declarations_are_template_errors(declaration, message):
    from clnet.runtime.kernels import parse_declaration

    with pytest.raises(clnet.TemplateError, match=message):
        parse_declaration("k", declaration)


def test_declarations_render_the_c_signature():
    from clnet.runtime.kernels import Declarations

    declare = Declarations()
    text = declare("k", "const real *x, local real *scratch, uint flag, ulong counter, real *out")
    assert text == ("__kernel void k(__global const real *x_p, const index_t x_off, __local real *scratch, "
                    "const uint flag, const ulong counter, __global real *out_p, const index_t out_off)")
    assert [(p.name, p.kind) for p in declare.signatures["k"]] == [
        ("x", "array"), ("scratch", "local"), ("flag", "scalar"), ("counter", "scalar"), ("out", "array")]


def test_float64_without_fp64_is_refused_before_building(ctx, templates):
    no_fp64 = dataclasses.replace(ctx.info, fp64=False)
    programs = Programs(ctx.context, no_fp64, templates)
    with pytest.raises(clnet.DeviceCapabilityError, match="cl_khr_fp64"):
        programs.program("broken.cl", dtype="float64")  # would fail to build: never gets there
    assert len(programs) == 0


def test_real_dtype_checks(ctx):
    assert ctx.real_dtype(np.float32) == np.float32
    assert ctx.real_dtype("float64") == np.float64
    for bad in (np.int32, "float16", "complex64", "banana"):
        with pytest.raises(TypeError, match="float32 or float64"):
            ctx.real_dtype(bad)


def test_fill_and_copy_respect_offsets(ctx, dtype):
    a = cla.to_device(ctx.queue, np.arange(11, dtype=dtype))
    memory.fill(ctx, a[3:8], -1.25)
    expected = np.arange(11, dtype=dtype)
    expected[3:8] = -1.25
    np.testing.assert_array_equal(a.get(), expected)
    b = cla.to_device(ctx.queue, np.zeros(11, dtype=dtype))
    memory.copy(ctx, a[1:6], b[5:10])
    expected_b = np.zeros(11, dtype=dtype)
    expected_b[5:10] = expected[1:6]
    np.testing.assert_array_equal(b.get(), expected_b)
    with pytest.raises(ValueError, match="shape"):
        memory.copy(ctx, a[1:6], b[1:3])
    with pytest.raises(TypeError, match="pyopencl.array.Array"):
        memory.fill(ctx, np.zeros(3, dtype), 1.0)


def test_installed_wheel_finds_its_kernels(tmp_path):
    """Build the wheel, install it into a fresh folder, import it from elsewhere, build a kernel."""
    root = kernel_dir().parent
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(root)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("clnet-*.whl"))
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    probe = ("import clnet, clnet.runtime.programs as p, numpy as np, pyopencl.array as cla\n"
             "from clnet.ops import memory\n"
             "print(p.kernel_dir())\n"
             f"with clnet.Context({TEST_DEVICE!r}) as ctx:\n"
             "    a = cla.zeros(ctx.queue, 3, np.float32); memory.fill(ctx, a, 7); print(a.get().sum())\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True).stdout
    folder, total = out.split()
    assert folder == str(site / "clnet" / "kernels")
    assert float(total) == 21.0


def test_slow_build_notice_says_once_what_compiles():
    import logging
    import time

    from clnet.runtime.log import logger
    from clnet.runtime.programs import slow_build_notice

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with slow_build_notice("fast thing", seconds=5):
            pass
        with slow_build_notice("slow thing", seconds=0.05):
            time.sleep(0.3)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    messages = [r.getMessage() for r in records]
    assert messages == ["compiling slow thing; this happens once, the driver caches the result"]
