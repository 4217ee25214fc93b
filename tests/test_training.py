"""Training: exact resume after SIGKILL, multi-worker == mirrored, exact evaluation, the recipe's pieces."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from training_helpers import (
    REPO, free_ports, model_weights, run_training, subprocess_env, tiny_config, train_command, write_config,
)


def test_eval_on_two_replicas_counts_every_pixel_once(synthetic_root, tmp_path):
    import keras

    import tfseg  # noqa: F401
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource

    model = tfseg.build_model("unet", 6, base_filters=4, depth=2)
    model.save(tmp_path / "model.keras")
    command = [*train_command("x")[:3], "eval", str(tmp_path / "model.keras"), "--dataset", "synthetic",
               "--data-root", str(synthetic_root), "--batch-size", "2", "--strategy", "mirrored",
               "--logical-cpus", "2", "--out", str(tmp_path / "report"), "--overlays", "1"]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reported = np.array(json.loads((tmp_path / "report" / "metrics.json").read_text())["plain"]["confusion_matrix"])

    source = ExampleSource(open_dataset("synthetic", synthetic_root), "val")
    assert len(source) % 2 == 1, "the split must end with a partial batch"
    model = keras.saving.load_model(tmp_path / "model.keras")
    expected = np.zeros((6, 6), np.int64)
    for i in range(len(source)):
        image, label = source[i]
        predicted = model.predict(image[None].astype("float32"), verbose=0)[0].argmax(-1)
        valid = label != 255
        np.add.at(expected, (label[valid].astype(int), predicted[valid]), 1)
    np.testing.assert_array_equal(reported, expected)
    assert expected.sum() == sum(int((source[i][1] != 255).sum()) for i in range(len(source)))
    assert (tmp_path / "report" / "confusion_plain.png").is_file()
    assert (tmp_path / "report" / "overlay_0.png").is_file()


def test_unknown_config_key_names_it(tmp_path):
    from tfseg.training.config import load_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": "unet", "steps": 2, "learning_rat": 0.1}))
    with pytest.raises(ValueError, match=r"learning_rat.*config file .*config\.json"):
        load_config(path)
    result = subprocess.run([*train_command(path), "--set", "bogus_key=1"], capture_output=True, text=True,
                            env=subprocess_env(), cwd=REPO, timeout=120)
    assert result.returncode != 0 and "bogus_key" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_image_fails_before_training_naming_the_file(synthetic_root, tmp_path):
    import shutil

    from tfseg.training.train import train

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    broken = sorted((root / "JPEGImages").glob("train_*"))[3]
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=broken.name):
        train(None, **tiny_config(root, tmp_path / "out"))
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_resumed_stream_continues_with_the_same_batches(synthetic_root):
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource, training_batches

    source = ExampleSource(open_dataset("synthetic", synthetic_root), "train")
    stream = list(training_batches(source, 3, (32, 40), seed=7).take(9))  # 5 steps per epoch: crosses an epoch
    resumed = list(training_batches(source, 3, (32, 40), seed=7, start_step=4).take(5))
    for (a, b), (c, d) in zip(stream[4:], resumed):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
        np.testing.assert_array_equal(b.numpy(), d.numpy())
    other_seed = next(iter(training_batches(source, 3, (32, 40), seed=8)))
    assert not np.array_equal(other_seed[0].numpy(), stream[0][0].numpy())


def test_augmentation_pads_with_mean_and_ignore_and_keeps_pixels_aligned():
    from tfseg.data.augment import deeplab_augment

    image = np.zeros((20, 30, 3), np.uint8)
    image[..., 0] = np.arange(30)[None, :] * 8  # the label follows the red channel exactly
    label = (np.arange(30)[None, :].repeat(20, 0) % 7).astype(np.uint8)
    out_image, out_label = deeplab_augment(image, label, tf.constant([1, 2], tf.int64), (40, 50), 255,
                                           scale_range=(1.0, 1.0))
    out_image, out_label = out_image.numpy(), out_label.numpy()
    assert out_image.shape == (40, 50, 3) and out_label.shape == (40, 50)
    padded = out_label == 255
    assert padded.sum() == 40 * 50 - 20 * 30
    np.testing.assert_allclose(out_image[padded], 127.5)
    inside = ~padded
    np.testing.assert_array_equal((out_image[..., 0][inside] / 8).astype(int) % 7, out_label[inside])


def test_rare_class_crops_hold_the_rare_class_and_keep_pixels_aligned():
    from tfseg.data.augment import deeplab_augment

    # A 4x3 patch of class 2 in a 60x80 image of class 0; crops of 20x20 hold it 1 time in 17 by chance.
    image = np.zeros((60, 80, 3), np.uint8)
    image[..., 0] = np.arange(80)[None, :] * 3  # the label's column follows the red channel
    label = np.zeros((60, 80), np.uint8)
    label[40:44, 70:73] = 2
    label[:6, :6] = 255  # ignored: never drawn, even with the highest priority

    def share_with_class_2(probability, priority=(0.1, 1.0, 50.0)):
        hits = 0
        for i in range(48):
            out_image, out_label = deeplab_augment(image, label, tf.constant([3, i], tf.int64), (20, 20), 255,
                                                   scale_range=(1.0, 1.0), flip=False,
                                                   rare_class=(probability, list(priority)))
            out_image, out_label = out_image.numpy(), out_label.numpy()
            column = (out_image[0, 0, 0] / 3).astype(int)  # where the crop starts: the slices of image and label agree
            rows = [r for r in range(60) if np.array_equal(label[r:r + 20, column:column + 20], out_label)]
            assert rows, "the label crop is not the image crop's"
            hits += (out_label == 2).any()
        return hits / 48

    assert share_with_class_2(0.0) < 0.2
    assert share_with_class_2(1.0) == 1.0
    assert 0.35 < share_with_class_2(0.5) < 0.75
    assert share_with_class_2(1.0, priority=(1.0, 1.0, 0.0)) < 0.2  # class 2 of priority 0 is never drawn


def test_poly_schedule_matches_the_formula():
    from tfseg.training.schedules import PolyDecay

    schedule = PolyDecay(0.01, 100, power=0.9, end_learning_rate=1e-4, warmup_steps=10)
    for step in (0, 5, 9, 10, 50, 99, 100, 150):
        poly = (0.01 - 1e-4) * (1 - min(step, 100) / 100) ** 0.9 + 1e-4
        expected = min(0.01 * (step + 1) / 10, poly) if step < 10 else poly
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_median_frequency_weights_by_hand():
    from tfseg.data.pipeline import median_frequency_weights

    labels = [np.array([[0, 0, 1, 1]], np.uint8), np.array([[0, 2, 2, 255]], np.uint8)]
    source = type("Source", (), {"__len__": lambda self: 2, "label": lambda self, i: labels[i]})()
    # valid pixels per image: 4 and 3 (255 is ignored); class 0 is in both, 1 in the first, 2 in the second
    freq = np.array([3 / (4 + 3), 2 / 4, 2 / 3])
    expected = np.median(freq) / freq
    np.testing.assert_allclose(median_frequency_weights(source, 3), expected)
