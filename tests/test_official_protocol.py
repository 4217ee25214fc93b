"""The official DeepLab input protocol on the zoo's official cards, and ADE20K scored as the official evaluation.

Expected sizes are worked by hand from research/deeplab's ``preprocess_utils.resize_to_range`` and
``model.scale_dimension``; the ADE20K reference is a numpy transcription of ``eval.py``
(``tf.metrics.mean_iou`` over 151 labels with weight 0 where the label is 0).
"""

from __future__ import annotations

import json

import cv2
import keras
import numpy as np
import pytest

import tfseg
from tfseg.inference import InputProtocol, ModelInfo
from tfseg.inference.metadata import save_keras_model
from tfseg.inference.modes import official_resized_size, official_scaled_size
from tfseg.layers.dense_crf import DenseCRF

ADE20K_CARD = "deeplabv3plus_xception65_ade20k"


def test_official_sizes_worked_by_hand():
    # resize_to_range(513, 513, factor 16): max_size becomes 497 (16k + 1); a 375x500 VOC-sized image is
    # scaled by 497/500 to 372.75 -> 373 x 497, then 373 is raised to 385 (16 * 24 + 1).
    assert tuple(official_resized_size(375, 500, 513, 513, 16).numpy()) == (385, 497)
    assert tuple(official_resized_size(500, 375, 513, 513, 16).numpy()) == (497, 385)
    # A small image is enlarged: 20x30 -> 513x770 is too long, so 497/30: 331.3 -> 332 -> 337 rows; in float32,
    # as the official code computes, 30 * (497 / 30) is 497.00003, so the width becomes 498 -> 513.
    assert np.float32(30) * (np.float32(497) / np.float32(30)) > 497
    assert tuple(official_resized_size(20, 30, 513, 513, 16).numpy()) == (337, 513)
    # scale_dimension: (513 - 1) * s + 1.
    assert [int(official_scaled_size(513, s)) for s in (0.5, 0.75, 1.25, 1.5, 1.75)] == [257, 385, 641, 769, 897]


def test_official_cards_say_how_their_models_are_fed():
    for name in tfseg.zoo.list():
        card = tfseg.zoo.card(name)
        if card.weights.get("format") != "official_deeplab_checkpoint":
            assert card.protocol.is_whole_image, name
            continue
        canvas = (1025, 2049) if card.data["dataset"]["name"] == "cityscapes" else (513, 513)
        assert card.protocol.canvas == canvas and card.protocol.pad_value == 127.5, name
        assert card.protocol.resize == ((513, 513, 16) if name == ADE20K_CARD else None), name
    with pytest.raises(ValueError, match="protocol: unknown keys \\['pad'\\]"):
        InputProtocol.from_dict({"canvas": [513, 513], "pad": 127.5})


def hand_set_model(classes=151):
    """A 1x1 convolution whose argmax is the red channel's value: logit_k = 2 k R - k^2 = R^2 - (R - k)^2."""
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(classes, 1, name="logits")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((1, 1, 3, classes), np.float32)
    kernel[0, 0, 0] = 2 * np.arange(classes)
    conv.set_weights([kernel, -np.arange(classes, dtype=np.float32) ** 2])
    return model


def write_ade20k(root, examples):
    """ADE20K's layout: one validation image per (label, predicted class), its red channel the prediction."""
    for split in ("training", "validation"):
        for folder in ("images", "annotations"):
            (root / folder / split).mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "training" / "ADE_train_00000001.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(root / "annotations" / "training" / "ADE_train_00000001.png"), np.zeros((4, 4), np.uint8))
    for k, (label, predicted) in enumerate(examples):
        image = np.zeros((*label.shape, 3), np.uint8)
        image[..., 0] = predicted
        cv2.imwrite(str(root / "images" / "validation" / f"ADE_val_{k + 1:08d}.png"), image[..., ::-1])
        cv2.imwrite(str(root / "annotations" / "validation" / f"ADE_val_{k + 1:08d}.png"), label)
    return root


def official_ade20k_scores(examples, classes=151):
    """research/deeplab eval.py for ADE20K (ignore_label 0): tf.metrics.mean_iou with weight 0 on label 0."""
    confusion = np.zeros((classes, classes))
    for label, predicted in examples:
        weights = (label != 0).astype(float).ravel()
        np.add.at(confusion, (label.ravel(), np.full(label.size, predicted)), weights)
    diagonal, rows, columns = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    denominator = rows + columns - diagonal
    iou = np.where(denominator > 0, diagonal / np.where(denominator > 0, denominator, 1), 0.0)
    return iou[denominator > 0].mean(), iou, denominator > 0


def test_ade20k_card_is_scored_with_channel_zero_as_the_official_evaluation(tmp_path, capsys):
    """Label 0 ("other") is not evaluated; a prediction of channel 0 on another class counts against it."""
    rng = np.random.default_rng(0)
    examples = []
    for (height, width), predicted in (((20, 30), 0), ((24, 16), 5), ((30, 30), 12)):
        label = rng.choice([0, 5, 12, 7], size=(height, width), p=[0.3, 0.3, 0.3, 0.1]).astype(np.uint8)
        examples.append((label, predicted))
    root = write_ade20k(tmp_path / "ADEChallengeData2016", examples)
    model = hand_set_model()
    save_keras_model(model, tmp_path / "ade.keras", ModelInfo.from_card(tfseg.zoo.card(ADE20K_CARD)))

    from tfseg.cli import main

    assert main(["eval", str(tmp_path / "ade.keras"), "--data-root", str(root), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["plain"]
    mean_iou, iou, present = official_ade20k_scores(examples)
    assert scores["mean_iou"] == pytest.approx(mean_iou, abs=1e-12)
    per_class = scores["per_class_iou"]
    assert per_class["other"] == 0.0 and present[0]  # predicted on valid pixels: IoU 0, in the mean
    names = tfseg.zoo.card(ADE20K_CARD).class_names
    for k in np.flatnonzero(present):
        assert per_class[names[k]] == pytest.approx(iou[k], abs=1e-12)
    assert sum(value is not None for value in per_class.values()) == present.sum()


def test_a_zoo_models_crf_is_its_cards_in_predict_and_in_exports():
    from tfseg.export.parity import export_crf, exported_info
    from tfseg.inference.serving import resolve_crf

    card = tfseg.zoo.card("camvid_unet")
    model = tfseg.zoo.load("camvid_unet", weights=None)
    assert card.crf["bilateral_sxy"] != DenseCRF().bilateral_sxy
    predictor = tfseg.inference.Predictor(model, crf=True)
    assert {k: predictor.crf_layer.get_config()[k] for k in card.crf} == card.crf
    file_info = exported_info(model, None, resolve_crf(export_crf(model, True), card.num_classes, portable=True))
    assert {k: file_info.crf[k] for k in card.crf} == card.crf
    assert file_info.class_names == card.class_names and file_info.source == "zoo:camvid_unet"
    plain = tfseg.build_model("unet", 11, base_filters=4, depth=2)
    assert export_crf(plain, True) == {}  # no card: tfseg's parameters (the layer's defaults)
    assert export_crf(plain, "fast") == {"downsample": 4, "iterations": 3}  # tfseg's fast mode


def test_ade20k_resize_version_is_stated_on_the_card_and_in_the_readme_as_the_code_computes_it():
    """The 2018 resize_to_range (long side at most 497), named on the card and in the README, is what the code does."""
    from pathlib import Path

    assert tuple(official_resized_size(375, 500, 513, 513, 16).numpy()) == (385, 497)
    notes = " ".join(tfseg.zoo.card(ADE20K_CARD).data["notes"].split())
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    for text in (notes, readme):
        assert "resize_to_range(513, 513, factor 16)" in text and "of 2018" in text
        assert "375x500 image goes to 385x497" in text
    assert tfseg.zoo.card(ADE20K_CARD).protocol.resize == (513, 513, 16)
