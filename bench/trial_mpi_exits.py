"""A fault trial, not a benchmark: every way a rank of an MPI job can end, in every phase of its
life, run many times, checking that the whole job ends within seconds, with a non-zero status and
a line that names the rank (issue 33's first failure: jobs that hung for ever).

    .venv/bin/python bench/trial_mpi_exits.py [--runs 20]

Each case is tests/distributed_run.py's fault mode (2 ranks), or issue 33's reproducer (2 and 3
ranks: rank 1 calls sys.exit while rank 0 waits in a sum). Prints one line per case."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN = HERE.parent / "tests" / "distributed_run.py"
MPIEXEC = Path(sys.executable).with_name("mpiexec")
REPRODUCER = ("import clnet, sys; w = clnet.distributed.World(); "
              "sys.exit({code}) if w.rank == 1 else w.sum(1.0)")
MODES = {  # mode: the phase it ends rank 1 in
    "exit0-before": "before fit", "exit1-before": "before fit", "os_exit-before": "before fit",
    "exit0": "during fit", "exit3": "during fit", "os_exit": "during fit", "os_exit0": "during fit",
    "raise": "during fit", "kill": "during fit",
    "exit0-after": "after fit", "exit1-after": "after fit", "os_exit0-after": "after fit",
}


def run_once(command: list[str], timeout: float) -> tuple[int | None, str, float]:
    env = {**os.environ, "POCL_MAX_PTHREAD_COUNT": "1"}
    started = time.perf_counter()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, "", time.perf_counter() - started
    return result.returncode, result.stdout + result.stderr, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    cases = [(f"reproducer sys.exit({code}), {n} ranks",
              [str(MPIEXEC), "-n", str(n), sys.executable, "-c", REPRODUCER.format(code=code)])
             for n in (2, 3) for code in (0, 1)]
    with tempfile.TemporaryDirectory() as tmp:
        cases += [(f"{mode} ({phase})", [str(MPIEXEC), "-n", "2", sys.executable, str(RUN), f"{tmp}/out.npz", "sgd",
                                        mode]) for mode, phase in MODES.items()]
        print(f"{'case':42} {'runs':>4} {'hangs':>5} {'status 0':>8} {'no rank line':>12} {'max s':>6}")
        for name, command in cases:
            hangs = zero = unnamed = 0
            longest = 0.0
            for _ in range(args.runs):
                status, output, seconds = run_once(command, args.timeout)
                longest = max(longest, seconds)
                hangs += status is None
                zero += status == 0
                unnamed += status is not None and "clnet.distributed: rank" not in output
            print(f"{name:42} {args.runs:4} {hangs:5} {zero:8} {unnamed:12} {longest:6.1f}", flush=True)


if __name__ == "__main__":
    main()
