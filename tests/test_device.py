"""Device listing and the choice of a device from a spec."""

import dataclasses

import pyopencl as cl
import pytest

import clnet
from clnet.runtime.device import choose, format_table

from .conftest import TEST_DEVICE


def fake(index, type_, name, platform="Fake platform", vendor="Fake vendor", units=8, clock=1000,
         memory=2**30, unified=False):
    return clnet.DeviceInfo(index=index, platform=platform, name=name, vendor=vendor, type=type_,
                            compute_units=units, clock_mhz=clock, global_mem_bytes=memory,
                            local_mem_bytes=65536, max_work_group_size=256, opencl_version="OpenCL 3.0",
                            driver_version="1.0", fp64=True, unified_memory=unified)


MACHINE = [
    fake("0:0", "CPU", "pthread-AMD EPYC", platform="Portable Computing Language", vendor="AuthenticAMD",
         units=2, clock=2600, unified=True),
    fake("1:0", "GPU", "Intel(R) UHD Graphics 770", platform="Intel(R) OpenCL Graphics",
         vendor="Intel(R) Corporation", units=32, clock=1450, unified=True),
    fake("2:0", "GPU", "NVIDIA H200", platform="NVIDIA CUDA", vendor="NVIDIA Corporation", units=132,
         clock=1980),
    fake("2:1", "GPU", "NVIDIA T400", platform="NVIDIA CUDA", vendor="NVIDIA Corporation", units=6, clock=1400),
    fake("3:0", "GPU", "gfx1100", platform="AMD Accelerated Parallel Processing",
         vendor="Advanced Micro Devices, Inc.", units=48, clock=2500),
]


def test_devices_table_matches_pyopencl():
    infos = clnet.devices()
    expected = [(p, d, dev) for p, plat in enumerate(cl.get_platforms()) for d, dev in enumerate(plat.get_devices())]
    assert [info.index for info in infos] == [f"{p}:{d}" for p, d, _ in expected]
    for info, (_, _, dev) in zip(infos, expected):
        assert info.name == dev.name.strip()
        assert info.compute_units == dev.max_compute_units > 0
        assert info.clock_mhz == dev.max_clock_frequency
        assert info.global_mem_bytes == dev.global_mem_size > 0
        assert info.local_mem_bytes == dev.local_mem_size > 0
        assert info.max_work_group_size == dev.max_work_group_size > 0
        assert info.opencl_version.startswith("OpenCL")
        assert info.driver_version == dev.driver_version.strip()
        assert info.fp64 == ("cl_khr_fp64" in dev.extensions)
        assert info.type in ("GPU", "CPU", "ACCELERATOR", "OTHER")
        assert info.platform and info.vendor
    table = format_table(infos, chosen=infos[0])
    for info in infos:
        assert info.index in table and info.name in table
    assert table.splitlines()[1].startswith("*")


def test_no_platform_gives_a_clear_error(monkeypatch):
    def no_platform():
        raise cl.LogicError("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")

    monkeypatch.setattr(cl, "get_platforms", no_platform)
    with pytest.raises(clnet.NoPlatformError, match="pyopencl\\[pocl\\]"):
        clnet.devices()


@pytest.mark.parametrize("spec, index", [
    ("pocl", "0:0"), ("cpu", "0:0"), ("CPU", "0:0"), ("gpu", "2:0"), ("nvidia", "2:0"), ("amd", "3:0"),
    ("intel", "1:0"), ("2:1", "2:1"), (" 1 : 0 ", "1:0"), ("t400", "2:1"), ("UHD", "1:0"), ("gfx", "3:0"),
])
def test_choose_by_spec(spec, index):
    chosen, reason = choose(spec, MACHINE, environ={})
    assert chosen.index == index
    assert repr(spec) in reason


def test_default_is_the_best_gpu_of_any_platform():
    chosen, reason = choose(None, MACHINE, environ={})
    assert chosen.name == "NVIDIA H200"  # discrete, most compute units x clock, not the first platform
    assert "GPU" in reason
    integrated_only = [MACHINE[0], MACHINE[1]]
    assert choose(None, integrated_only, environ={})[0].name == "Intel(R) UHD Graphics 770"
    cpu_only = [MACHINE[0]]
    chosen, reason = choose(None, cpu_only, environ={})
    assert chosen.index == "0:0" and "no GPU" in reason


def test_environment_variable_names_the_default():
    chosen, reason = choose(None, MACHINE, environ={"CLNET_DEVICE": "t400"})
    assert chosen.index == "2:1" and "$CLNET_DEVICE" in reason
    # an explicit spec wins over the variable
    assert choose("pocl", MACHINE, environ={"CLNET_DEVICE": "t400"})[0].index == "0:0"


@pytest.mark.parametrize("spec", ["quantum", "7:0", "0:9", "  "])
def test_unknown_spec_lists_the_devices(spec):
    with pytest.raises(clnet.DeviceNotFoundError) as err:
        choose(spec, MACHINE, environ={})
    message = str(err.value)
    assert repr(spec) in message
    if spec.strip():
        for info in MACHINE:
            assert info.name in message


def test_unknown_environment_spec_says_where_it_came_from():
    with pytest.raises(clnet.DeviceNotFoundError, match=r"\$CLNET_DEVICE 'quantum'"):
        choose(None, MACHINE, environ={"CLNET_DEVICE": "quantum"})


def test_context_on_this_machine_for_each_kind_of_spec(monkeypatch):
    infos = clnet.devices()
    target = next(i for i in infos if i.index == clnet.Context(TEST_DEVICE).info.index)
    specs = [target.index, target.name[3:12], target.type.lower()]
    if target.is_pocl:
        specs.append("pocl")
    for spec in specs:
        with clnet.Context(spec) as ctx:
            assert ctx.info == best_of(infos, spec)
            assert ctx.device.name.strip() == ctx.info.name
            assert ctx.queue.device == ctx.device
    monkeypatch.setenv("CLNET_DEVICE", target.index)
    with clnet.Context() as ctx:
        assert ctx.info.index == target.index and "$CLNET_DEVICE" in ctx.reason
    with pytest.raises(clnet.DeviceNotFoundError, match="no-such-device"):
        clnet.Context("no-such-device")


def best_of(infos, spec):
    return choose(spec, infos, environ={})[0]


def test_device_info_is_comparable_without_the_cl_object():
    info = clnet.devices()[0]
    assert dataclasses.replace(info, cl_device=None) == info


def test_a_vendor_spec_means_the_vendors_own_platform_before_another_platform_on_its_cpu():
    intel_cpu = [fake("0:0", "CPU", "pthread-Intel(R) Xeon(R) Gold 6338", platform="Portable Computing Language",
                      vendor="GenuineIntel", clock=3200),
                 fake("1:0", "CPU", "Intel(R) Xeon(R) Gold 6338", platform="Intel(R) OpenCL",
                      vendor="Intel(R) Corporation", clock=0)]
    assert choose("intel", intel_cpu)[0].index == "1:0"
    assert choose("pocl", intel_cpu)[0].index == "0:0"
    assert choose("amd", MACHINE)[0].index == "3:0"
    amd_cpu_only = [fake("0:0", "CPU", "pthread-AMD EPYC", platform="Portable Computing Language",
                         vendor="AuthenticAMD")]
    assert choose("amd", amd_cpu_only)[0].index == "0:0"  # no AMD platform: AMD's devices elsewhere
