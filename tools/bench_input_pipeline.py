"""Does the training input pipeline scale? Start-up, memory and throughput against the training step.

Writes folder datasets of generated road-like scenes (JPEG images, PNG label maps) of each size
given by ``--sizes`` (default 500 and 5,000 images), then measures, each in a fresh process:

- time from ``TrainingRun`` (the dataset opened and every file's header checked) to the first
  augmented batch, and the process's peak resident memory after ``--batches`` batches;
- the pipeline's throughput in images per second (DeepLab's augmentation to ``--crop`` crops);
- the images per second one training step of DeepLab v3+ MobileNetV2 consumes at that crop and
  batch (random data, ``model.fit``), in the same run.

Usage: ``python tools/bench_input_pipeline.py [--sizes 500 5000] [--crop 513] [--batch-size 8]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_folder_dataset(root, count, size=(512, 683), seed=0):
    """``count`` generated images of ``size`` (H, W) with 11-class label maps, in tfseg's folder layout."""
    import cv2
    import numpy as np

    root = Path(root)
    if (root / "done.json").is_file() and json.loads((root / "done.json").read_text()) == [count, list(size)]:
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    (root / "classes.txt").write_text("\n".join(f"class{k}" for k in range(11)) + "\n")
    rng = np.random.default_rng(seed)
    height, width = size
    for i in range(count):
        label = np.zeros(size, np.uint8)
        label[height // 2:] = 3
        for _ in range(6):
            y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
            cv2.rectangle(label, (x, y), (x + int(rng.integers(20, 200)), y + int(rng.integers(20, 200))),
                          int(rng.integers(0, 11)), -1)
        colours = rng.integers(0, 256, (11, 3), dtype=np.uint8)
        image = colours[label] + rng.integers(0, 30, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / f"{i:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        cv2.imwrite(str(root / "labels" / f"{i:05d}.png"), label)
    (root / "done.json").write_text(json.dumps([count, list(size)]))
    return root


PIPELINE_PROBE = """
import json, resource, sys, time
start = time.perf_counter()
from tfseg.training.config import load_config
from tfseg.training.train import TrainingRun
from tfseg.data.pipeline import training_batches
config = load_config(None, dataset="folder", data_root=sys.argv[1], crop_size=[int(sys.argv[2])] * 2,
                     batch_size=int(sys.argv[3]), steps=1, out_dir=sys.argv[5], val_split=None)
run = TrainingRun(config)
imported = time.perf_counter()
batches = iter(training_batches(run.train_source, config.batch_size, config.crop_size))
next(batches)
first = time.perf_counter()
count = int(sys.argv[4])
for _ in range(count):
    next(batches)
done = time.perf_counter()
print(json.dumps({"images": len(run.train_source), "seconds_to_first_batch": first - imported,
                  "seconds_to_first_batch_with_imports": first - start,
                  "pipeline_images_per_second": count * config.batch_size / (done - first),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

STEP_PROBE = """
import json, sys, time
import numpy as np, tensorflow as tf, keras, tfseg
from tfseg.losses import SparseCrossEntropyWithIgnore
crop, batch, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
model = tfseg.build_model("deeplab_v3plus", 11, backbone="mobilenet_v2", decoder=True, atrous_rates=(6, 12, 18))
model.compile(keras.optimizers.AdamW(1e-3), SparseCrossEntropyWithIgnore(ignore_label=255))
x = np.random.default_rng(0).uniform(0, 255, (batch, crop, crop, 3)).astype("float32")
y = np.random.default_rng(1).integers(0, 11, (batch, crop, crop))
data = tf.data.Dataset.from_tensors((x, y)).repeat()
model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
start = time.perf_counter()
model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
print(json.dumps({"step_images_per_second": steps * batch / (time.perf_counter() - start)}))
"""


def probe(code, *args):
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--crop", type=int, default=513)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20, help="batches timed after the first")
    parser.add_argument("--step-repeats", type=int, default=3, help="training steps timed")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "tfseg_pipeline_bench"))
    args = parser.parse_args(argv)

    from tfseg.bench.cpu import cpu_description

    print(f"CPU: {cpu_description()}")
    work = Path(args.work)
    rows = []
    for count in args.sizes:
        root = write_folder_dataset(work / f"folder_{count}", count)
        rows.append(probe(PIPELINE_PROBE, root, args.crop, args.batch_size, args.batches, work / "out"))
    step = probe(STEP_PROBE, args.crop, args.batch_size, args.step_repeats)["step_images_per_second"]
    print(f"crop {args.crop}x{args.crop}, batch {args.batch_size}")
    print("images  to first batch (s)  with imports (s)  peak memory (MiB)  pipeline images/s  x step's")
    for row in rows:
        print(f"{row['images']:6d}  {row['seconds_to_first_batch']:19.2f}  {row['seconds_to_first_batch_with_imports']:16.2f}"
              f"  {row['peak_rss_mib']:17.0f}  {row['pipeline_images_per_second']:17.1f}"
              f"  {row['pipeline_images_per_second'] / step:8.1f}")
    print(f"DeepLab v3+ MobileNetV2 training step consumes {step:.2f} images/s")
    return rows, step


if __name__ == "__main__":
    main()
