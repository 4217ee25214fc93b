"""Measure a CamVid zoo model and write the figures onto its card, each with its split and this command.

    python tools/measure_zoo_model.py NAME [--tune-crf] [--tune-fast-crf] [--multi-scale] [--tflite] [--holdout 0006R0]

Two splits, always named on the card:

- ``heldout``: the train frames of sequence ``--holdout`` (101 frames of 0006R0 by default), which a
  model trained with ``dataset_options: {holdout: 0006R0}`` never saw: the generalisation figure.
  A card whose recipe did not hold the sequence out says "seen in training" there;
- ``val``: the standard val (101 frames of 0016E5, a sequence the model trained on): same-sequence.

Figures, on each split: the four scores (pixel accuracy, mean accuracy, mean IoU, frequency-weighted
IoU) and per-class IoU of the model as ``tfseg.zoo.load`` gives it, under its card's protocol;
``--tune-crf``: DeepLab's search (Chen et al. 2015; the Gaussian kernel fixed at sxy 3 / compat 3,
the bilateral kernel's weight and deviations searched, 10 iterations) on ``--search-images`` frames
spread over the held-out split, the best setting written to the card; with the card's CRF;
``--tune-fast-crf``: the fast mode's search (mean field at 1/``--fast-downsample`` resolution, the
Gaussian kernel left out: at that scale it is narrower than a pixel; DeepLab's bilateral grid and
2 or 3 iterations) on ``--fast-search-images`` frames spread over the held-out split (or val, with
``--fast-search-split val``, for a card whose model trained on the held-out sequence); with the card's
fast CRF;
``--multi-scale``: DeepLab's multi-scale inference with flips (``--scales``); ``--tflite``: float and
full-integer int8 TFLite at 360x480 (int8 calibrated on a seeded spread sample of 100 train frames),
their scores and LiteRT latency with 2 threads, timed in turn.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GAUSSIAN = dict(gaussian_sxy=3, gaussian_compat=3)
GRID = dict(bilateral_compat=[3, 5], bilateral_sxy=[20, 50, 80], bilateral_srgb=[3, 5])
FAST_GRID = dict(iterations=[2, 3], **GRID)
SCORES = ("mean_iou", "pixel_accuracy", "mean_accuracy", "frequency_weighted_iou")


def splits(card, holdout):
    """``{prefix: (ExampleSource, description)}`` of the held-out sequence and the standard val."""
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource

    recipe = _recipe(card)
    held_in_recipe = (recipe.get("dataset_options") or {}).get("holdout")
    seen = "never seen in training" if held_in_recipe == holdout else "seen in training: the model trained on it"
    held = ExampleSource(open_dataset("camvid", holdout=holdout), "val")
    val = ExampleSource(open_dataset("camvid"), "val")
    return {
        "heldout": (held, f"CamVid sequence {holdout} ({len(held)} train frames held out; {seen})"),
        "val": (val, f"CamVid val ({len(val)} frames of 0016E5, a sequence the model trained on: same-sequence)"),
    }


def _recipe(card):
    from tfseg.training.config import read_config_file

    recipe_file = card.recipe_file()
    return read_config_file(recipe_file) if recipe_file else {}


def spread(source, count):
    from tfseg.data.pipeline import ExampleSource, spread_sample

    subset = ExampleSource(source.dataset, source.split)
    subset.pairs = tuple(source.pairs[i] for i in spread_sample(len(source), count))
    return subset


def tune_crf(model, source, count, grid=GRID, fixed=None):
    """The best of ``grid``'s settings (with ``fixed``: by default DeepLab's Gaussian, 10 iterations) on
    ``count`` frames spread over ``source``."""
    from tfseg.training.evaluate import evaluate_source

    fixed = dict(GAUSSIAN, iterations=10) if fixed is None else fixed
    search = spread(source, count)
    base = float(evaluate_source(model, search, batch_size=2).scores["mean_iou"])
    print(f"CRF search on {count} spread frames (no CRF: {100 * base:.2f})", flush=True)
    results = []
    for values in itertools.product(*grid.values()):
        params = dict(fixed, **dict(zip(grid, values)))
        score = float(evaluate_source(model, search, batch_size=2, crf=params).scores["mean_iou"])
        results.append((score, params))
        print(f"  {json.dumps(params)}: {100 * score:.2f}", flush=True)
    score, best = max(results, key=lambda r: r[0])
    print(f"best on the search frames: {100 * score:.2f} with {best}")
    return best


class Figures:
    """The card's ``measured`` list, keyed by metric; each new figure carries its split and command."""

    def __init__(self, measured, command):
        self.entries = {e["metric"]: e for e in measured or ()}
        self.command = command

    def add(self, metric, value, split=None, **extra):
        if isinstance(value, dict):
            value = {k: (None if v is None or v != v else round(100 * float(v), 2)) for k, v in value.items()}
        else:
            value = round(float(value), 2)
        self.entries[metric] = {"metric": metric, "value": value, **({"split": split} if split else {}),
                                "command": self.command, **extra}

    def scores(self, prefix, suffix, result, split):
        for key in SCORES:
            self.add(f"{prefix}_{key}{suffix}", 100 * result.scores[key], split)
        self.add(f"{prefix}_class_iou{suffix}", dict(zip(result.class_names, result.iou)), split)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--holdout", default="0006R0", help="the CamVid train sequence to score on")
    parser.add_argument("--tune-crf", action="store_true")
    parser.add_argument("--search-images", type=int, default=6)
    parser.add_argument("--tune-fast-crf", action="store_true")
    parser.add_argument("--fast-downsample", type=int, default=4, help="the fast CRF's resolution divisor")
    parser.add_argument("--fast-search-images", type=int, default=20)
    parser.add_argument("--fast-search-split", choices=("heldout", "val"), default="heldout",
                        help="where the fast CRF is searched: frames the model never saw (val for a card that "
                             "trained on the held-out sequence)")
    parser.add_argument("--multi-scale", action="store_true")
    parser.add_argument("--scales", default="0.5,0.75,1.0,1.25,1.5,1.75", help="multi-scale inference scales")
    parser.add_argument("--tflite", action="store_true")
    parser.add_argument("--out", default="runs/measure", help="folder for the TFLite files")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="drop the card's earlier figures (new weights)")
    args = parser.parse_args(argv)

    from tfseg import zoo
    from tfseg.training.evaluate import evaluate_source
    from tfseg.zoo.cards import write_card

    card = zoo.card(args.name)
    data = dict(card.data)
    figures = Figures(None if args.fresh else data.get("measured"), "python tools/measure_zoo_model.py " + " ".join(
        argv if argv is not None else sys.argv[1:]))
    model = zoo.load(args.name)
    started = time.time()
    named = splits(card, args.holdout)
    for prefix, (source, split) in named.items():
        result = evaluate_source(model, source, batch_size=2)
        print(f"{split}:\n{result.table()}", flush=True)
        figures.scores(prefix, "", result, split)

    if args.tune_crf:
        data["crf"] = tune_crf(model, named["heldout"][0], args.search_images)
        data["crf_tuning"] = (f"DeepLab's search (Gaussian fixed, bilateral grid {json.dumps(GRID)}) on "
                              f"{args.search_images} frames spread over {named['heldout'][1]}: {figures.command}")
    if args.tune_fast_crf:
        fixed = dict(gaussian_compat=0, downsample=args.fast_downsample)
        search_source, search_split = named[args.fast_search_split]
        data["crf_fast"] = tune_crf(model, search_source, args.fast_search_images, FAST_GRID, fixed)
        data["crf_fast_tuning"] = (f"the fast mode's search (1/{args.fast_downsample} resolution, Gaussian left out, "
                                   f"grid {json.dumps(FAST_GRID)}) on {args.fast_search_images} frames spread over "
                                   f"{search_split}: {figures.command}")
    for key, suffix in (("crf", "_crf"), ("crf_fast", "_crf_fast")):
        if not data.get(key):
            continue
        for prefix, (source, split) in named.items():
            refined = evaluate_source(model, source, batch_size=2, crf=data[key])
            print(f"{split}, CRF {data[key]}: mean IoU {100 * refined.scores['mean_iou']:.2f}", flush=True)
            figures.scores(prefix, suffix, refined, split)

    if args.multi_scale:
        scales = tuple(float(s) for s in args.scales.split(","))
        for prefix, (source, split) in named.items():
            result = evaluate_source(model, source, batch_size=1, scales=scales, flip=True)
            print(f"{split}, scales {scales} + flip: mean IoU {100 * result.scores['mean_iou']:.2f}", flush=True)
            figures.scores(prefix, "_multiscale_flip", result, split)
            figures.entries[f"{prefix}_mean_iou_multiscale_flip"]["setting"] = f"scales {list(scales)} and their flips"

    if args.tflite:
        measure_tflite(model, card, named, figures, Path(args.out) / args.name, args.threads)
    data["measured"] = list(figures.entries.values())
    write_card(data, card.path)
    print(f"card {card.path} updated in {time.time() - started:.0f} s")
    return 0


def measure_tflite(model, card, named, figures, out, threads):
    """Float and int8 TFLite files of ``model`` at 360x480: scores on both splits, latency timed in turn."""
    import numpy as np

    import tfseg.export
    from tfseg.bench.cpu import cpu_description
    from tfseg.bench.timing import interleaved_median_seconds
    from tfseg.inference.evaluation import evaluate
    from tfseg.inference.runners import TFLiteRunner

    out.mkdir(parents=True, exist_ok=True)
    size = (360, 480)
    files = {"float": out / "float.tflite", "int8": out / "int8.tflite"}
    tfseg.export.tflite(model, files["float"], input_size=size, num_threads=threads)
    tfseg.export.tflite(model, files["int8"], quantization="int8", representative_data="camvid:train",
                        calibration_limit=100, input_size=size, num_threads=threads)
    for kind, path in files.items():
        for prefix, (source, split) in named.items():
            result = evaluate(str(path), source, num_threads=threads)
            print(f"{kind} TFLite, {split}: mean IoU {100 * result.scores['mean_iou']:.2f}", flush=True)
            figures.add(f"{prefix}_{kind}_tflite_mean_iou", 100 * result.scores["mean_iou"], split,
                        setting=f"{kind} TFLite at 360x480" + (", calibrated on 100 train frames spread over the "
                                                                "split (seeded)" if kind == "int8" else ""))
    image = np.random.default_rng(0).integers(0, 256, (1, *size, 3), dtype=np.uint8)
    runners = [TFLiteRunner(files[kind], num_threads=threads) for kind in files]
    float_s, int8_s = interleaved_median_seconds([lambda r=r: r(image) for r in runners], repeats=20)
    setting = f"LiteRT interpreter, {threads} threads, 360x480, timed in turn; CPU: {cpu_description()}"
    figures.add("float_tflite_ms", float_s * 1e3, setting=setting)
    figures.add("int8_tflite_ms", int8_s * 1e3, setting=setting)
    figures.add("int8_speedup", float_s / int8_s, setting=setting)
    print(f"float {float_s * 1e3:.1f} ms, int8 {int8_s * 1e3:.1f} ms ({float_s / int8_s:.2f}x)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
