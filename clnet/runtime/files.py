"""Files written atomically, for everything clnet saves (networks, checkpoints, ONNX models, the
tuning file): the bytes go to a temporary file beside the destination, named with the writing
process's id, which is flushed to the disk and then renamed over the destination. A crash or a
full disk leaves the previous file whole; two processes never share a temporary file; the
temporaries a killed writer left are removed by the next write of the same file; a replaced
file keeps its permissions (a new one follows the umask, as open() would); and an error names
the file that was being written, not the temporary one.

Files that several processes change (the tuning file, the device checks) are read, changed and
written under `locked`, so that two processes saving at once lose nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # Windows: no lock (clnet's shared files are written on POSIX systems)
    fcntl = None


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def sweep(path: Path) -> list[Path]:
    """Remove the temporary files of earlier writes of `path` whose process is gone; returns them."""
    removed = []
    for found in path.parent.glob(f".{path.name}.*.tmp"):
        pid = found.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                found.unlink()
                removed.append(found)
    return removed


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)  # elsewhere: read it by setting it (briefly)
    os.umask(mask)
    return mask


def _mode(path: Path) -> int:
    """The permissions the written file gets: the replaced file's, else what open() would give."""
    with contextlib.suppress(OSError):
        return path.stat().st_mode & 0o7777
    return 0o666 & ~_umask()


def _naming(exc: OSError, message: str) -> OSError:
    """The same kind of OSError, with `message`."""
    return type(exc)(exc.errno, message) if exc.errno is not None else type(exc)(message)


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(file)` on a temporary file in `path`'s folder, flush and fsync it, then rename it
    over `path` (see the module's docstring). On any failure `path` is untouched, the temporary
    file is removed, and an OSError names `path`."""
    path = Path(path)
    sweep(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, f"cannot write {path}: {exc.strerror} (no file can be made in {path.parent})") from exc
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, _mode(path))
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise _naming(exc, f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for `path` among processes and threads (flock on `<path>.lock`
    beside it; the lock ends with the process however it ends)."""
    path = Path(path)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
