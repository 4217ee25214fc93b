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


def test_the_worked_example_trains_the_head_and_keeps_the_frozen_backbone():
    model, result = _example().main(["--zoo", NAME, "--steps", "3", "--batch-size", "2", "--train-images", "4",
                                     "--eval-images", "2"])
    pretrained = zoo.load(NAME)
    assert model.output_shape[-1] == len(result["classes"]) == 3
    assert result["eval_split"] == "held-out sequence 0006R0" and result["eval_images"] == 2
    changed = _compare(model, pretrained)
    backbone = set(weighted_layers(find_backbone(model)))
    assert "logits" in changed and any(n.startswith(("aspp", "decoder", "concat_projection")) for n in changed)
    assert not backbone & set(changed), sorted(backbone & set(changed))
    for scores in (result["fine_tuned"], result["merged_11_class"]):
        assert 0.0 <= scores["mean_iou"] <= 1.0 and set(scores["iou"]) == {"drivable", "walkable", "other"}


def test_merged_classes_score_the_eleven_class_model_on_the_robot_classes():
    """Road -> drivable, Pavement -> walkable, the rest -> other: labels and summed probabilities."""
    import keras

    from tfseg.data import open_dataset
    from tfseg.data.base import read_label
    from tfseg.data.remap import class_mapping, merge_classes
    from tfseg.zoo.finetune import ROBOT_CLASSES, ROBOT_REST, merged_class_model

    camvid = open_dataset("camvid")
    robot = merge_classes(camvid, ROBOT_CLASSES, rest=ROBOT_REST)
    assert robot.class_names == ("drivable", "walkable", "other") and robot.ignore_label == camvid.ignore_label
    _, label_path = camvid.files("val")[0]
    old, new = read_label(label_path, camvid), read_label(label_path, robot)
    expected = np.select([old == 3, old == 4, old == 11], [0, 1, 11], default=2)
    np.testing.assert_array_equal(new, expected)

    inputs = keras.Input((2, 2, 11))
    merged = merged_class_model(keras.Model(inputs, inputs), class_mapping(camvid.class_names, ROBOT_CLASSES, "other"))
    logits = np.random.default_rng(0).normal(size=(1, 2, 2, 11)).astype("float32")
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    summed = np.stack([probabilities[..., 3], probabilities[..., 4],
                       probabilities.sum(-1) - probabilities[..., 3] - probabilities[..., 4]], -1)
    np.testing.assert_allclose(np.exp(merged.predict(logits, verbose=0)), summed, rtol=1e-5)


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


def test_pretrained_weights_start_the_card_model_from_a_local_file(tmp_path):
    import keras
    import pytest

    from tfseg.training.config import load_config
    from tfseg.training.model_setup import build_training_model

    keras.utils.set_random_seed(3)
    own = zoo.load("camvid_unet", weights=None)
    own.save_weights(tmp_path / "own.weights.h5")
    config = load_config(None, pretrained="camvid_unet", pretrained_weights=str(tmp_path / "own.weights.h5"), steps=1)
    started = build_training_model(config, num_classes=11, total_steps=1)
    assert _compare(started, own) == []
    assert "logits" in _compare(started, zoo.load("camvid_unet"))
    with pytest.raises(ValueError, match="missing.weights.h5'?: no such file"):
        load_config(None, pretrained="camvid_unet", pretrained_weights=str(tmp_path / "missing.weights.h5"), steps=1)
    with pytest.raises(ValueError, match="needs pretrained=ZOO_NAME"):
        load_config(None, pretrained_weights=str(tmp_path / "own.weights.h5"), steps=1)


def test_fine_tuning_defaults_keep_what_the_zoo_model_knows(tmp_path):
    """`tfseg train --pretrained NAME --dataset camvid --crop 128x160 --batch-size 2`, a few steps: val holds.

    Before the defaults (SGD at 0.007, batch norm re-estimated from 2 small crops, scale 0.5-2.0),
    10 such steps took the card's val mean IoU from 47.0 to 11.
    """
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource
    from tfseg.data.remap import subset
    from tfseg.training.config import load_config
    from tfseg.training.evaluate import evaluate_source
    from tfseg.training.train import train

    config = load_config(None, pretrained=NAME, dataset="camvid", crop_size="128x160", batch_size=2, steps=4,
                         out_dir=str(tmp_path / "run"), val_split=None, verbose=0)
    assert (config.optimizer, config.freeze_batch_norm, config.warmup_steps) == ("adamw", True, 0)
    assert config.learning_rate < 1e-3
    tuned, _ = train(config)
    val = ExampleSource(subset(open_dataset("camvid"), {"val": 10}), "val")
    before = evaluate_source(zoo.load(NAME), val, batch_size=5).scores["mean_iou"]
    after = evaluate_source(tuned, val, batch_size=5).scores["mean_iou"]
    assert abs(after - before) < 0.01, (before, after)
    first = "expanded_conv_depthwise/kernel"
    old, new = (next(v for v in m.weights if v.path == first).numpy() for m in (zoo.load(NAME), tuned))
    assert np.abs(new - old).max() < 0.02 * np.abs(old).max()


def test_fine_tuning_defaults_feed_a_half_size_recipe_at_the_card_models_scale():
    """A card trained at half size and packed with input_stride 2 takes full-size images: the recipe's
    scales of the image (0.375-0.875 at half size) become 0.75-1.75, not a quarter-size image."""
    from tfseg.training.config import fine_tuning_defaults, read_config_file

    card = zoo.card("camvid_unet")
    assert card.data["training"]["image_scale"] == 0.5 and card.data["options"]["input_stride"] == 2
    recipe = read_config_file(card.folder / card.data["training"]["config"])
    defaults = fine_tuning_defaults("camvid_unet")
    assert defaults["scale_range"] == [2 * s for s in recipe["scale_range"]]
    assert defaults["learning_rate"] == recipe["learning_rate"] / 20
