"""A one-line progress bar on stderr (a line per step when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`with Progress(total, "tuning") as bar: bar.update(note="...")`."""

    def __init__(self, total: int, label: str, enabled: bool = True, stream: TextIO | None = None, width: int = 24):
        self.total, self.label, self.enabled, self.width = max(total, 1), label, enabled, width
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = time.perf_counter()
        self._tty = getattr(self.stream, "isatty", lambda: False)()

    def update(self, step: int = 1, note: str = "") -> None:
        self.done = min(self.done + step, self.total)
        self.show(note)

    def show(self, note: str = "") -> None:
        """Redraw with `note`, without advancing. Off a terminal: a line when there is a note,
        at most about ten of them for a long run."""
        if not self.enabled:
            return
        if not self._tty and self.done < self.total and (not note or self.done % max(1, self.total // 10)):
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.started
        line = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.0f} s  {note}"
        if self._tty:
            self.stream.write("\r" + line[:120].ljust(120))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
