"""The machine's fp32 matrix-multiply rate, the yardstick for a model's achieved GFLOP/s."""

from __future__ import annotations

from tfseg.bench.timing import median_seconds

MATMUL_SIZE = 2048


def matmul_rate(size=MATMUL_SIZE, repeats=10):
    """GFLOP/s of a ``size``^3 float32 matmul in TensorFlow (2 * size^3 flops a call)."""
    import tensorflow as tf

    a = tf.random.stateless_uniform([size, size], seed=[1, 2])
    b = tf.random.stateless_uniform([size, size], seed=[3, 4])
    multiply = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)[:1, :1]))
    seconds = median_seconds(lambda: multiply().numpy(), repeats=repeats)
    return 2.0 * size**3 / seconds / 1e9
