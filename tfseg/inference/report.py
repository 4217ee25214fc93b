"""An evaluation's report folder: ``metrics.json``, the confusion-matrix pictures, colour overlays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfseg.visualize import confusion_chart, overlay, write_rgb


def write_overlays(predictor, source, out_dir, count=4):
    """``overlay_<k>.png``: image | truth | prediction for the first ``count`` examples of ``source``."""
    out_dir = Path(out_dir)
    palette = source.dataset.palette
    ignore = source.dataset.ignore_label
    paths = []
    for k in range(min(count, len(source))):
        image, label = source[k]
        predicted, _ = predictor(image)
        row = np.concatenate(
            [image, overlay(image, label, palette, ignore_label=ignore), overlay(image, predicted, palette)], axis=1
        )
        path = out_dir / f"overlay_{k}.png"
        write_rgb(path, row)
        paths.append(path)
    return paths


def write_report(results, out_dir, class_names):
    """``metrics.json`` (one entry per result name, e.g. ``{"plain": r, "crf": r}``) and ``confusion_<name>.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, result in results.items():
        summary[name] = result.to_dict()
        write_rgb(out_dir / f"confusion_{name}.png", confusion_chart(result.confusion, class_names))
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return out_dir / "metrics.json"
