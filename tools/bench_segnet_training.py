"""Training speed of SegNet-Basic vs DeepLab v3+ MobileNetV2 at CamVid's 360x480, in one run.

    python tools/bench_segnet_training.py [--batch 4] [--steps 5] [--rounds 3] [--jit-compile auto]

Both models: 11 classes, random weights and data, Adam, sparse cross-entropy on logits,
``train_on_batch`` (compiled once, first step excluded). Rounds alternate between the models so a
change in the machine's load hits both; the median step time of each model is reported, and the
ratio of their images per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfseg  # noqa: E402

MODELS = {
    "segnet_basic": ("segnet_basic", {}),
    "deeplab_v3plus_mobilenet_v2": ("deeplab_v3plus", {"backbone": "mobilenet_v2"}),
}


def compiled(name, options, input_shape, jit_compile):
    model = tfseg.build_model(name, 11, input_shape, **options)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"])
    args = parser.parse_args(argv)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch, args.height, args.width, 3)).astype("float32")
    labels = rng.integers(0, 11, (args.batch, args.height, args.width)).astype("int32")
    models = {}
    for key, (name, options) in MODELS.items():
        model = compiled(name, options, (args.height, args.width, 3), jit)
        start = time.perf_counter()
        model.train_on_batch(images, labels)  # traces and compiles
        print(f"{key}: {model.count_params():,} parameters, first step {time.perf_counter() - start:.1f} s, "
              f"jit_compile={model.jit_compile}", flush=True)
        models[key] = model

    step_times = {key: [] for key in models}
    for round_index in range(args.rounds):
        for key, model in models.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                loss = model.train_on_batch(images, labels)
                step_times[key].append(time.perf_counter() - start)
            median = statistics.median(step_times[key][-args.steps:])
            print(f"round {round_index + 1} {key}: median step {median:.2f} s, loss {float(np.asarray(loss)):.3f}",
                  flush=True)

    rates = {}
    for key, times in step_times.items():
        median = statistics.median(times)
        rates[key] = args.batch / median
        print(f"{key}: median step {median:.2f} s over {len(times)} steps -> {rates[key]:.2f} images/s")
    segnet, deeplab = rates["segnet_basic"], rates["deeplab_v3plus_mobilenet_v2"]
    print(f"batch {args.batch} at {args.height}x{args.width}: SegNet-Basic / DeepLab v3+ MobileNetV2 "
          f"images-per-second ratio {segnet / deeplab:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
