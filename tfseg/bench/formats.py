"""Latency of one model in each deployment format, on one uint8 image of a fixed size.

Formats: ``keras`` (the serving function as a TensorFlow graph), ``keras_xla`` (the same,
XLA-compiled with ``jit_compile=True``), ``saved_model`` (exported and loaded back), ``tflite``
(float, LiteRT interpreter with XNNPACK) and ``int8`` (full integer; calibrated on synthetic
images, which is enough for timing but not for accuracy).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tfseg.bench.matmul import matmul_callable
from tfseg.bench.timing import interleaved_median_seconds
from tfseg.inference.native_log import silenced_native_stderr

FORMATS = ("keras", "keras_xla", "saved_model", "tflite", "int8")
CALIBRATION_IMAGES = 8


def _serving(model):
    from tfseg.inference.serving import SegmentationServing

    return SegmentationServing(model, check_inputs=False)


def _spec(input_size):
    import tensorflow as tf

    return tf.TensorSpec([1, *input_size, 3], tf.uint8, name="image")


def keras_callable(model, input_size, xla=False):
    import tensorflow as tf

    serving = _serving(model)
    function = tf.function(serving.outputs, jit_compile=True) if xla else serving.serve
    concrete = function.get_concrete_function(_spec(input_size))
    return lambda image: {k: v.numpy() for k, v in concrete(tf.constant(image)).items()}


def saved_model_callable(model, input_size, folder):
    import tensorflow as tf

    from tfseg.inference.runners import SavedModelRunner

    serving = _serving(model)
    function = serving.concrete_function(_spec(input_size))
    tf.saved_model.save(serving, str(folder), signatures={"serving_default": function})
    return SavedModelRunner(folder)


def tflite_callable(model, input_size, path, quantization, threads):
    from tfseg.export.to_tflite import convert
    from tfseg.inference.runners import TFLiteRunner
    from tfseg.inference.sources import synthetic_samples

    calibration = None
    if quantization == "int8":
        calibration = [s.image[None] for s in synthetic_samples(CALIBRATION_IMAGES, input_size)]
    Path(path).write_bytes(convert(_serving(model), _spec(input_size), quantization, calibration))
    return TFLiteRunner(path, num_threads=threads)


def benchmark_formats(model, input_size, formats=("keras", "tflite"), threads=None, repeats=10, macs=None,
                      log=None):
    """``(rows, matmul GFLOP/s)``: per format, latency (median, ms), images/s and achieved GFLOP/s.

    The formats and a 2048^3 fp32 matmul are timed in turn (interleaved), so that every figure
    sees the same share of whatever else runs on the machine. GFLOP/s counts 2 flops per
    multiply-add of ``macs``.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; valid: {list(FORMATS)}")
    image = np.random.default_rng(0).integers(0, 256, (1, *input_size, 3), dtype=np.uint8)
    runs = []
    with tempfile.TemporaryDirectory(prefix="tfseg_bench_") as folder:
        for name in formats:
            if log:
                log(f"preparing {name} ...")
            if name in ("keras", "keras_xla"):
                run = keras_callable(model, input_size, xla=name == "keras_xla")
            elif name == "saved_model":
                run = saved_model_callable(model, input_size, Path(folder) / "saved_model")
            else:
                quantization = "int8" if name == "int8" else "none"
                run = tflite_callable(model, input_size, Path(folder) / f"{name}.tflite", quantization, threads)
            with silenced_native_stderr():  # XLA logs its compilation on the first call
                run(image)
            runs.append(lambda run=run: run(image))
        matmul, flops = matmul_callable()
        *seconds, matmul_seconds = interleaved_median_seconds(runs + [matmul], repeats=repeats)
    matmul_gflops = flops / matmul_seconds / 1e9
    rows = []
    for name, s in zip(formats, seconds):
        row = {"format": name, "latency_ms": s * 1e3, "images_per_s": 1.0 / s}
        if macs is not None:
            row["gflops"] = 2.0 * macs / s / 1e9
            row["fraction_of_matmul"] = row["gflops"] / matmul_gflops
        rows.append(row)
    return rows, matmul_gflops
