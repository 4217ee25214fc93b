"""The machine's fp32 matrix-multiply rate, the yardstick for a model's achieved GFLOP/s."""

from __future__ import annotations

from tfseg.bench.timing import median_seconds

MATMUL_SIZE = 2048


def matmul_callable(size=MATMUL_SIZE):
    """``(run, flops)``: one ``size``^3 float32 matmul in TensorFlow, and its 2 * size^3 flops."""
    import tensorflow as tf

    a = tf.random.stateless_uniform([size, size], seed=[1, 2])
    b = tf.random.stateless_uniform([size, size], seed=[3, 4])
    multiply = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)[:1, :1]))
    return (lambda: multiply().numpy()), 2.0 * size**3


def matmul_rate(size=MATMUL_SIZE, repeats=10):
    """GFLOP/s of a ``size``^3 float32 matmul in TensorFlow."""
    run, flops = matmul_callable(size)
    return flops / median_seconds(run, repeats=repeats) / 1e9
