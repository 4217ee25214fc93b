"""A one-line progress bar on standard error (no dependency)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress(total, "files") as bar: bar.update()``; silent for a single item or off a terminal's wish."""

    def __init__(self, total, unit="items", stream=None, width=30, enabled=None):
        self.total, self.unit, self.width = total, unit, width
        self.stream = stream or sys.stderr
        self.enabled = (total is None or total > 1) if enabled is None else enabled
        self.done = 0
        self.start = time.perf_counter()

    def update(self, count=1):
        self.done += count
        if self.enabled:
            self._draw()

    def _draw(self):
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            filled = int(self.width * self.done / self.total)
            bar = "#" * filled + "." * (self.width - filled)
            text = f"\r[{bar}] {self.done}/{self.total} {self.unit} ({rate:.1f}/s)"
        else:
            text = f"\r{self.done} {self.unit} ({rate:.1f}/s)"
        self.stream.write(text)
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()
