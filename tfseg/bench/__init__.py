"""Benchmarks: latency per format, multiply-adds, and the machine's fp32 matmul rate in the same run."""

from tfseg.bench.formats import FORMATS, benchmark_formats  # noqa: F401
from tfseg.bench.macs import count_macs  # noqa: F401
from tfseg.bench.matmul import matmul_callable, matmul_rate  # noqa: F401
