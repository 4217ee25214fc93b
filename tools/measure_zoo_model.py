"""Measure a CamVid zoo model and write the figures onto its card, each with this command.

    python tools/measure_zoo_model.py NAME [--tune-crf] [--tflite] [--search-images 6]

1. val (101 images, 360x480, whole image) scores of the pretrained model as ``tfseg.zoo.load`` gives it;
2. ``--tune-crf``: DeepLab's procedure (Chen et al. 2015): the Gaussian kernel fixed (sxy 3, compat 3),
   the bilateral kernel's weight and standard deviations searched on ``--search-images`` val images
   spread evenly over the split, 10 mean-field iterations; the best setting goes on the card.
   The search images are part of val, which the card says;
3. the val scores with the card's CRF parameters;
4. ``--tflite``: float and full-integer int8 TFLite at 360x480 (int8 calibrated on 100 CamVid train
   images), their val mean IoU and LiteRT latency with 2 threads (tools/int8_camvid.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GAUSSIAN = dict(gaussian_sxy=3, gaussian_compat=3)
GRID = dict(bilateral_compat=[3, 5], bilateral_sxy=[20, 50, 80], bilateral_srgb=[3, 5])


def spread_subset(source, count):
    """The same split restricted to ``count`` examples spread evenly over it."""
    import numpy as np

    from tfseg.data.pipeline import ExampleSource

    subset = ExampleSource(source.dataset, source.split)
    picks = np.linspace(0, len(source) - 1, count).round().astype(int)
    subset.pairs = tuple(source.pairs[i] for i in picks)
    return subset


def tune_crf(model, source, count):
    from tfseg.training.evaluate import evaluate_source

    search = spread_subset(source, count).load_all()
    base = float(evaluate_source(model, search, batch_size=2).scores["mean_iou"])
    print(f"CRF search on {count} val images (no CRF: {100 * base:.2f})", flush=True)
    results = []
    for values in itertools.product(*GRID.values()):
        params = dict(GAUSSIAN, **dict(zip(GRID, values)), iterations=10)
        score = float(evaluate_source(model, search, batch_size=2, crf=params).scores["mean_iou"])
        results.append((score, params))
        print(f"  {json.dumps(params)}: {100 * score:.2f}", flush=True)
    score, best = max(results, key=lambda r: r[0])
    print(f"best on the search images: {100 * score:.2f} with {best}")
    return best


def figure(metric, value, command, **extra):
    return {"metric": metric, "value": round(float(value), 2), "command": command, **extra}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--tune-crf", action="store_true")
    parser.add_argument("--search-images", type=int, default=6)
    parser.add_argument("--tflite", action="store_true")
    parser.add_argument("--out", default="runs/measure", help="folder for the TFLite files")
    args = parser.parse_args(argv)

    from tfseg import zoo
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource
    from tfseg.training.evaluate import evaluate_source
    from tfseg.zoo.cards import write_card

    card = zoo.card(args.name)
    data = dict(card.data)
    command = "python tools/measure_zoo_model.py " + " ".join(argv if argv is not None else sys.argv[1:])
    model = zoo.load(args.name)
    source = ExampleSource(open_dataset("camvid"), "val").load_all()
    started = time.time()
    plain = evaluate_source(model, source, batch_size=2)
    print(f"val, no CRF:\n{plain.table()}", flush=True)
    measured = {e["metric"]: e for e in data.get("measured") or ()}
    for key in ("mean_iou", "pixel_accuracy", "mean_accuracy", "frequency_weighted_iou"):
        measured[f"val_{key}"] = figure(f"val_{key}", 100 * plain.scores[key], command)
    measured["val_class_iou"] = {"metric": "val_class_iou", "command": command, "value": {
        name: round(100 * float(v), 2) for name, v in zip(card.class_names, plain.iou)}}

    if args.tune_crf:
        data["crf"] = tune_crf(model, source, args.search_images)
        data["crf_tuning"] = (f"DeepLab's search (Gaussian fixed, bilateral grid {json.dumps(GRID)}) on "
                              f"{args.search_images} CamVid val images spread over the split: {command}")
    if data.get("crf"):
        refined = evaluate_source(model, source, batch_size=2, crf=data["crf"])
        print(f"val, CRF {data['crf']}: mean IoU {100 * refined.scores['mean_iou']:.2f}", flush=True)
        for key in ("mean_iou", "pixel_accuracy"):
            measured[f"val_{key}_crf"] = figure(f"val_{key}_crf", 100 * refined.scores[key], command)

    if args.tflite:
        from int8_camvid import float_and_int8

        summary = float_and_int8(model, Path(args.out) / args.name, (360, 480))
        print(json.dumps(summary, indent=2), flush=True)
        for key in ("float_tflite_mean_iou", "int8_tflite_mean_iou", "float_tflite_ms", "int8_tflite_ms",
                    "int8_speedup", "int8_pixel_agreement", "float_tflite_pixel_agreement"):
            measured[f"val_{key}" if "mean_iou" in key else key] = figure(
                f"val_{key}" if "mean_iou" in key else key, summary[key], command,
                **({"setting": f"LiteRT interpreter, 2 threads, 360x480, 2-core CPU: {summary['cpu']}"}
                   if key.endswith(("_ms", "_speedup")) else {}))
    data["measured"] = list(measured.values())
    write_card(data, card.path)
    print(f"card {card.path} updated in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
