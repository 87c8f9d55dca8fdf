"""The guardian of an MPI rank: a small process of its own (its own session, so that the
launcher's clean-up leaves it the moment to speak) that waits on a pipe from the rank and, when
the rank ends without saying goodbye, writes the line that says which rank ended and why: what
the rank wrote last (`called os._exit(3)`), else that it ended without a word (a signal such as
SIGKILL, or a crash), which the launcher does not say.

    python .../clnet/distributed/guardian.py FD RANK SIZE PID [PEERS]   (a script: it imports nothing of clnet)

The rank writes lines to the pipe: a reason, "reported" (it said why itself, before MPI_Abort),
or "bye" (a normal end). Started by clnet.distributed.World for jobs of more than one rank.

Then it ends the rank's peers on this machine (PEERS: "pid:start,..." with each process's start
time, so that a pid used again by another process is left alone): MPICH's mpiexec sometimes
misses a rank that ends right after MPI_Init (its proxy never reports the exit), and the others,
waiting in a collective on shared memory, would wait for ever. Ending them ends the job either
way; where mpiexec did notice, they are already ending.
"""

from __future__ import annotations

import os
import signal
import sys

QUIET = ("bye", "reported")


def start_time(pid: int) -> str | None:
    """The start time of process `pid` (Linux's /proc/PID/stat field 22), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def end_peers(peers: str, own: int) -> None:
    """SIGKILL each peer "pid:start" that is still the process it was (not this guardian's rank)."""
    for peer in filter(None, peers.split(",")):
        pid, started = peer.split(":")
        if int(pid) != own and started != "None" and start_time(int(pid)) == started:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass  # ended already


def main(fd: int, rank: int, size: int, pid: int, peers: str = "") -> None:
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
    end_peers(peers, pid)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:5]), *sys.argv[5:6])
