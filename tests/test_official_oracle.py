"""The official research/deeplab code as the oracle of the official zoo cards (slow; needs the code on disk).

``tests/official_deeplab.py`` builds the official eval graph of each card's configuration under
``tf.compat.v1`` with random weights (batch norm calibrated on the images), saves it with a real
``tf.train.Saver`` with Momentum slots as an official-style tarball, and writes the official
padded evaluation's labels and probabilities for two 375x500 images. The test loads the tarball
with ``tfseg.zoo.load(NAME, weights=TARBALL)`` and checks ``tfseg.predict`` and ``tfseg eval``
against them, and that they fail without the padding protocol.

Run it with the official code (``deeplab/`` and ``slim/`` of tensorflow/models ``research/``, or a
copy such as sumsuddin/DeepSegmentation) outside the repository and ``tf-slim`` / ``tf-keras``::

    pip install tf-slim==1.1.0 tf-keras==2.21.0
    TFSEG_OFFICIAL_DEEPLAB=/path/to/research python3 -m pytest -q -m slow tests/test_official_oracle.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import tfseg
from training_helpers import subprocess_env

CODE_ENV_VAR = "TFSEG_OFFICIAL_DEEPLAB"
HERE = Path(__file__).resolve().parent
CARDS = {"deeplabv3_mobilenet_v2_voc": "mobilenet_v2", "deeplabv3plus_xception65_voc": "xception_65"}
SIZE = (375, 500)  # a VOC image's size, not the 513x513 crop
# Two float32 graphs of 50-100 layers with batch norm calibrated on the images: probabilities agree to
# about 1e-4 (mean 5e-6 for MobileNetV2), so labels may differ only where the top two are this close.
TOLERANCE = 1e-3

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get(CODE_ENV_VAR), reason=f"set {CODE_ENV_VAR} to the official deeplab code"),
]


def oracle_images(count=2, seed=0):
    """Smooth random images with structure at several scales (uint8 RGB, 375x500)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = np.zeros((*SIZE, 3), np.float32)
        for cells in (3, 7, 17):
            coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
            image += cv2.resize(coarse, SIZE[::-1], interpolation=cv2.INTER_CUBIC) / 3
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(images)


@pytest.fixture(scope="module")
def images():
    return oracle_images()


def official_run(variant, images, out):
    np.save(out / "images.npy", images)
    command = [sys.executable, str(HERE / "official_deeplab.py"), "--code", os.environ[CODE_ENV_VAR],
               "--variant", variant, "--images", str(out / "images.npy"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    return out / "model.tar.gz", np.load(out / "official_labels.npy"), np.load(out / "official_probabilities.npy")


def write_voc(root, images, labels):
    """A VOC-layout val split whose ground truth is ``labels`` (single-channel ids in SegmentationClass)."""
    from tfseg.data.palettes import voc_colormap

    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    colors = voc_colormap(256)[:, ::-1]
    names = [f"oracle_{k}" for k in range(len(images))]
    for name, image, label in zip(names, images, labels):
        cv2.imwrite(str(voc / "JPEGImages" / f"{name}.png"), image[..., ::-1])
        cv2.imwrite(str(voc / "SegmentationClass" / f"{name}.png"), np.ascontiguousarray(colors[label]))
    for split in ("train", "val"):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return voc


@pytest.mark.parametrize("card", sorted(CARDS))
def test_official_cards_predict_and_evaluate_as_the_official_code(card, images, tmp_path):
    tarball, official_labels, official_probabilities = official_run(CARDS[card], images, tmp_path)
    model = tfseg.zoo.load(card, weights=str(tarball))
    predictor = tfseg.inference.Predictor(model)
    whole = tfseg.inference.Predictor(model, protocol=tfseg.inference.InputProtocol())
    for image, labels, probabilities in zip(images, official_labels, official_probabilities):
        assert len(np.unique(labels)) >= 5  # the random network's labels vary over the image
        got_labels, got_probabilities = predictor(image)
        np.testing.assert_allclose(got_probabilities, probabilities, atol=TOLERANCE)
        assert np.abs(got_probabilities - probabilities).mean() < 1e-4
        top_two = np.sort(probabilities, axis=-1)[..., -2:]
        clear = top_two[..., 1] - top_two[..., 0] > TOLERANCE
        np.testing.assert_array_equal(got_labels[clear], labels[clear])
        assert np.mean(got_labels == labels) > 0.999
        assert np.array_equal(tfseg.predict(model, image), got_labels)
        # Without the padding protocol the labels are not the official ones.
        assert np.mean(whole(image)[0] == labels) < 0.9

    # tfseg eval of that model on a VOC tree whose ground truth is the official labels.
    voc = write_voc(tmp_path / "voc", images, official_labels)
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource

    source = ExampleSource(open_dataset("voc", voc), "val")
    result = tfseg.inference.evaluate(model, source, batch_size=2)
    assert result.scores["pixel_accuracy"] > 0.999
    unpadded = tfseg.inference.evaluate(model, source, options=tfseg.inference.InferenceOptions(
        protocol=tfseg.inference.InputProtocol()))
    assert unpadded.scores["pixel_accuracy"] < 0.9
