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


def interleaved_median_seconds(functions, repeats=10, warmup=2):
    """Median wall time of each of ``functions``, timed in turn (A, B, A, B, ...).

    Interleaving gives every function the same share of whatever else the machine is doing,
    which matters for a ratio measured on a shared machine.
    """
    for function in functions:
        for _ in range(warmup):
            function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, record in zip(functions, times):
            start = time.perf_counter()
            function()
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]
