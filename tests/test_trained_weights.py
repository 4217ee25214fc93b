"""Weights trained here (zoo/*/model.weights.h5): pinned by sha256, load by name, segment CamVid val."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

ZOO = Path(__file__).resolve().parents[1] / "zoo"
PRESETS = sorted(p.parent for p in ZOO.glob("*/config.json"))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.name for p in PRESETS])
def test_trained_weights_segment_camvid_val(preset):
    import tfseg
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource
    from tfseg.metrics import confusion_matrix, scores_from_confusion

    config = json.loads((preset / "config.json").read_text())
    metadata = json.loads((preset / "metadata.json").read_text())
    weights = preset / "model.weights.h5"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == metadata["weights_sha256"]
    assert weights.stat().st_size < 8e6

    model = tfseg.build_model(config["builder"], config["num_classes"], **config["options"])
    model.load_weights(weights)
    source = ExampleSource(open_dataset("camvid"), "val", limit=4)
    images = np.stack([source[i][0] for i in range(len(source))]).astype("float32")
    labels = np.stack([source[i][1] for i in range(len(source))])
    logits = model.predict(images, verbose=0)
    scores = scores_from_confusion(confusion_matrix(labels, logits, config["num_classes"], ignore_label=11))
    # An untrained model scores about 1/11 here; the card's full-val figure is in metadata.json.
    assert float(scores["pixel_accuracy"]) > 0.7, float(scores["pixel_accuracy"])
    assert float(scores["mean_iou"]) > 0.3, float(scores["mean_iou"])
