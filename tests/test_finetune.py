"""Fine-tuning a zoo model on new classes: the worked example (tools/finetune_example.py) and `tfseg train --pretrained`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from tfseg import zoo
from tfseg.training.train import find_backbone
from tfseg.zoo.transfer import weighted_layers

REPO = Path(__file__).resolve().parents[1]
NAME = "camvid_deeplab_v3plus_mobilenet_v2"


def _example():
    spec = importlib.util.spec_from_file_location("finetune_example", REPO / "tools" / "finetune_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compare(tuned, pretrained):
    """Names of layers whose weights differ from the pretrained model's (absent ones excluded)."""
    reference = weighted_layers(pretrained)
    changed = []
    for name, layer in weighted_layers(tuned).items():
        values = reference[name].get_weights()
        if [v.shape for v in values] != [tuple(w.shape) for w in layer.weights]:
            changed.append(name)
        elif not all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), values)):
            changed.append(name)
    return changed


def test_the_worked_example_trains_the_head_and_keeps_the_frozen_backbone(tmp_path):
    model, result = _example().main(["--data", str(tmp_path / "synthetic"), "--steps", "3", "--batch-size", "2",
                                     "--crop", "64", "--val-limit", "4"])
    pretrained = zoo.load(NAME)
    assert model.output_shape[-1] == len(result["classes"]) == 6
    changed = _compare(model, pretrained)
    backbone = set(weighted_layers(find_backbone(model)))
    assert "logits" in changed and any(n.startswith(("aspp", "decoder", "concat_projection")) for n in changed)
    assert not backbone & set(changed), sorted(backbone & set(changed))
    assert 0.0 <= result["val_mean_iou_after"] <= 1.0


def test_tfseg_train_pretrained_takes_the_card_architecture(tmp_path):
    from tfseg.training.train import train

    out = tmp_path / "run"
    model, _ = train(None, pretrained=NAME, dataset="synthetic", data_root=str(tmp_path / "synthetic"),
                     dataset_options={"generate": True, "num_train": 8, "num_val": 2}, steps=2, batch_size=2,
                     crop_size=(64, 64), freeze_backbone=True, out_dir=str(out), val_split=None, verbose=0)
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["model_options"]) == (zoo.card(NAME).builder, zoo.card(NAME).options)
    changed = _compare(model, zoo.load(NAME))
    assert "logits" in changed
    assert not set(weighted_layers(find_backbone(model))) & set(changed)


def test_pretrained_with_another_architecture_is_refused():
    import pytest

    from tfseg.training.config import load_config

    with pytest.raises(ValueError, match="leave model and model_options unset"):
        load_config(None, pretrained=NAME, model="unet", steps=1)
