"""The guardian of an MPI rank: a small process of its own (its own session, so that the
launcher's clean-up leaves it the moment to speak) that waits on a pipe from the rank and, when
the rank ends without saying goodbye, writes the line that says which rank ended and why: what
the rank wrote last (`called os._exit(3)`), else that it ended without a word (a signal such as
SIGKILL, or a crash), which the launcher does not say.

    python .../clnet/distributed/guardian.py FD RANK SIZE PID       (a script: it imports nothing of clnet)

The rank writes lines to the pipe: a reason, "reported" (it said why itself, before MPI_Abort),
or "bye" (a normal end). Started by clnet.distributed.World for jobs of more than one rank.
"""

from __future__ import annotations

import os
import sys

QUIET = ("bye", "reported")


def main(fd: int, rank: int, size: int, pid: int) -> None:
    received = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    lines = received.decode(errors="replace").strip().splitlines()
    last = lines[-1] if lines else ""
    if last in QUIET:
        return
    why = last or ("ended without a word: a signal such as SIGKILL (the launcher's too, once another rank has "
                   "ended), or a crash")
    os.write(2, f"clnet.distributed: rank {rank} of {size} (pid {pid}) {why}; the job ends\n".encode())


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:5]))
