"""Wall-clock timing of a callable: warm-up runs, then the median of timed repeats."""

from __future__ import annotations

import statistics
import time


def median_seconds(function, repeats=10, warmup=2):
    """Median wall time of ``function()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
