"""A progress bar on standard error (no dependency): redrawn in place on a terminal, else one line at a time."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "files") as bar: bar.update()``; silent for a single item or off a terminal's wish.

    On a terminal the bar is redrawn in place; elsewhere (a log file, a pipe) it is written as
    separate lines, at most one every ``line_every`` seconds plus the last one.
    """

    def __init__(self, total, unit="items", stream=None, width=30, enabled=None, line_every=5.0):
        self.total, self.unit, self.width = total, unit, width
        self.stream = stream or sys.stderr
        self.enabled = (total is None or total > 1) if enabled is None else enabled
        self.terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.line_every = line_every
        self.done = 0
        self.start = time.perf_counter()
        self._last_line = None

    def update(self, count=1):
        self.done += count
        if self.enabled:
            self._draw()

    def _text(self):
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            filled = int(self.width * self.done / self.total)
            bar = "#" * filled + "." * (self.width - filled)
            return f"[{bar}] {self.done}/{self.total} {self.unit} ({rate:.1f}/s)"
        return f"{self.done} {self.unit} ({rate:.1f}/s)"

    def _draw(self):
        if self.terminal:
            self.stream.write("\r" + self._text())
        else:
            now = time.perf_counter()
            last = self.done == self.total
            if not last and self._last_line is not None and now - self._last_line < self.line_every:
                return
            self._last_line = now
            self.stream.write(self._text() + "\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not (self.enabled and self.done):
            return
        if self.terminal:
            self.stream.write("\n")
        elif self.done != self.total:  # the last count has no line yet
            self.stream.write(self._text() + "\n")
        self.stream.flush()
