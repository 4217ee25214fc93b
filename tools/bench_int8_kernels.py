"""Does this CPU run int8 convolutions faster than float ones in LiteRT? Float vs int8 kernels in one run.

    python tools/bench_int8_kernels.py [--size 90x120] [--channels 64] [--threads 1 2] [--repeats 9]

The int8 goal of the deployment work (full-integer TFLite at least 2x faster than float) rests on the
interpreter's int8 kernels (XNNPACK's QS8) beating its fp32 ones. Whether they do depends on the
CPU: with VNNI dot-product instructions (``avx512_vnni`` / ``avx_vnni``) int8 multiply-adds run at
several times the fp32 rate; with plain AVX2 they go through 16-bit multiply-adds and can be no
faster than fp32 FMA. This script times, in turn and in the same process, the float and the
full-integer conversion of three layer stacks that make up the models' cost (six 3x3 convolutions,
six 1x1 convolutions, six 3x3 depthwise convolutions, each with ReLU) and prints the
float / int8 time ratio per stack and thread count, with the CPU's relevant instruction sets.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tfseg.bench.cpu import cpu_description  # noqa: E402
from tfseg.bench.timing import interleaved_median_seconds  # noqa: E402

LAYERS = 6


def stacks(channels, rng):
    import tensorflow as tf

    conv3 = [tf.constant(rng.normal(0, 0.05, (3, 3, channels, channels)).astype("float32")) for _ in range(LAYERS)]
    conv1 = [tf.constant(rng.normal(0, 0.1, (1, 1, channels, channels)).astype("float32")) for _ in range(LAYERS)]
    depth = [tf.constant(rng.normal(0, 0.2, (3, 3, channels, 1)).astype("float32")) for _ in range(LAYERS)]

    def conv_stack(kernels):
        def run(x):
            for kernel in kernels:
                x = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"))
            return x
        return run

    def depthwise_stack(x):
        for kernel in depth:
            x = tf.nn.relu(tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME"))
        return x

    # Each stack with its multiply-adds per layer and output pixel.
    return {"conv 3x3": (conv_stack(conv3), 9 * channels * channels),
            "conv 1x1": (conv_stack(conv1), channels * channels),
            "depthwise 3x3": (depthwise_stack, 9 * channels)}


def convert(function, shape, quantize, rng):
    import tensorflow as tf

    concrete = tf.function(function).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], tf.Module())
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.uniform(0, 1, shape).astype("float32")] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def interpreter(content, threads):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content, num_threads=threads)
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    runner.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    runner.invoke()
    return runner


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="90x120", help="feature map HxW (DeepLab v3+ at 360x480, stride 4)")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    shape = (1, height, width, args.channels)
    rng = np.random.default_rng(0)

    print(f"CPU: {cpu_description()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{LAYERS} layers of {args.channels} channels at {height}x{width}; median of {args.repeats} runs, "
          "float and int8 timed in turn")
    print(f"{'stack':15s} {'threads':>7s} {'float ms':>9s} {'int8 ms':>8s} {'float/int8':>10s} {'float GMAC/s':>12s}")
    for name, (function, macs_per_pixel) in stacks(args.channels, rng).items():
        files = [convert(function, shape, quantize, rng) for quantize in (False, True)]
        macs = LAYERS * height * width * macs_per_pixel
        for threads in args.threads:
            runners = [interpreter(content, threads) for content in files]
            float_s, int8_s = interleaved_median_seconds([runner.invoke for runner in runners], args.repeats)
            print(f"{name:15s} {threads:7d} {1e3 * float_s:9.2f} {1e3 * int8_s:8.2f} {float_s / int8_s:10.2f} "
                  f"{macs / float_s / 1e9:12.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
