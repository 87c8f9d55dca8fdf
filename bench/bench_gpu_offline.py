"""What AMD's compiler makes of clnet's GEMM kernels, without an AMD GPU: registers, scratch
memory and occupancy from LLVM's AMDGPU back end (issue 25).

    .venv/bin/python bench/bench_gpu_offline.py [--clang clang-15] [--targets gfx90a gfx1030]

Needs clang with the AMDGPU target and ROCm's device libraries (Debian: apt-get install clang-15
rocm-device-libs; clang 14 cannot read those 5.2 bitcode files). Renders each kernel as clnet
would build it (float32), compiles it with `-target amdgcn-amd-amdhsa -mcpu=TARGET -O3 -S` and
reads the figures the back end writes into the assembly: VGPRs, SGPRs, ScratchSize (bytes of
private memory per work-item that did not fit in registers: slow, off-chip) and Occupancy
(waves per SIMD). The CPU kernel (gemm.cl) is there for comparison: it is not meant for GPUs.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from clnet.runtime.programs import Templates

DEVICE_LIBS = "/usr/lib/x86_64-linux-gnu/amdgcn/bitcode"
FIGURES = ("NumVgprs", "NumSgprs", "ScratchSize", "Occupancy")
KERNELS = {
    "gemm_local 64x64x16, 4x4 per item (256 items)": ("gemm_local.cl", dict(
        tm=64, tn=64, tk=16, wm=4, wn=4, trans_a=False, trans_b=False, epilogue=None, keep_z=False)),
    "gemm_local 64x64x16, 4x4, fused relu + bias, z kept": ("gemm_local.cl", dict(
        tm=64, tn=64, tk=16, wm=4, wn=4, trans_a=False, trans_b=True, epilogue="relu", keep_z=True)),
    "gemm_local 64x64x16, 8x8 per item (64 items)": ("gemm_local.cl", dict(
        tm=64, tn=64, tk=16, wm=8, wn=8, trans_a=False, trans_b=False, epilogue=None, keep_z=False)),
    "gemm_tile (CPU kernel) 6 x 16": ("gemm.cl", dict(
        rows=6, width=8, a_layout="rows", packed_b=True, epilogue=None, keep_z=False, c_transposed=False,
        split_k=False)),
}


def compile_figures(clang: str, target: str, source: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kernel.cl"
        path.write_text(source)
        result = subprocess.run([clang, "-x", "cl", "-cl-std=CL1.2", "-target", "amdgcn-amd-amdhsa",
                                 f"-mcpu={target}", f"--rocm-device-lib-path={DEVICE_LIBS}", "-Xclang",
                                 "-finclude-default-header", "-O3", "-S", "-o", "-", str(path)],
                                capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return {name: re.search(rf"; {name}: (\d+)", result.stdout).group(1) for name in FIGURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clang", default="clang-15")
    parser.add_argument("--targets", nargs="+", default=["gfx90a", "gfx1030"])
    args = parser.parse_args()
    version = subprocess.run([args.clang, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"{version}; ROCm device libraries from {DEVICE_LIBS}\n")
    print("| kernel | target | " + " | ".join(FIGURES) + " |")
    print("|---|---|" + "---|" * len(FIGURES))
    templates = Templates()
    for label, (template, params) in KERNELS.items():
        source = templates.render(template, {"dtype": "float32", **params})
        for target in args.targets:
            figures = compile_figures(args.clang, target, source)
            print(f"| {label} | {target} | " + " | ".join(figures[name] for name in FIGURES) + " |")


if __name__ == "__main__":
    main()
