"""``tfseg.predict`` and ``tfseg predict``: one label map whatever the model's format, clear errors on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import tfseg
import tfseg.export
from tiny_camvid import SIZE, downscaled, trained_model

REPO = Path(__file__).resolve().parents[1]
NOISE = ("I0000", "W0000", "oneDNN", "absl::InitializeLog", "XNNPACK")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny CamVid U-Net as .keras, SavedModel and TFLite (fixed size) files."""
    model, keras_path = trained_model()
    folder = tmp_path_factory.mktemp("exported")
    tfseg.export.saved_model(model, folder / "sm")
    tfseg.export.tflite(model, folder / "fixed.tflite", input_size=SIZE)
    return {"model": model, "keras": keras_path, "saved_model": folder / "sm", "tflite": folder / "fixed.tflite"}


@pytest.fixture(scope="module")
def images():
    return downscaled("val", 2, offset=10)[0]


def test_every_format_gives_the_keras_labels(exported, images):
    expected = exported["model"].predict(images.astype("float32"), verbose=0).argmax(-1)
    for key in ("model", "keras", "saved_model", "tflite"):
        labels = tfseg.predict(exported[key], list(images))
        assert all(lab.dtype == np.int32 and lab.shape == SIZE for lab in labels), key
        agreement = np.mean(np.stack(labels) == expected)
        assert agreement >= (1.0 if key != "tflite" else 0.999), (key, agreement)


def test_fixed_size_file_on_another_size_and_image_files(exported, images, tmp_path):
    big = cv2.resize(images[0], (SIZE[1] * 2, SIZE[0] * 2), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    from_file = tfseg.predict(exported["tflite"], str(path))  # resized to 90x120 inside, probabilities back
    assert from_file.shape == big.shape[:2]
    small = cv2.resize(big, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR)  # what the file sees
    direct = tfseg.predict(exported["tflite"], small)
    back = cv2.resize(from_file, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_NEAREST)
    assert np.mean(back == direct) > 0.95  # only boundary pixels may move


def test_crf_inside_keras_graph_equals_crf_after_exported_file(exported, images):
    with_crf = tfseg.predict(exported["model"], images[0], crf=True)
    after_file = tfseg.predict(exported["saved_model"], images[0], crf=True)
    without = tfseg.predict(exported["model"], images[0])
    assert np.mean(with_crf == after_file) >= 0.999
    assert np.mean(with_crf != without) > 0.01  # the CRF did change labels


def test_bad_input_gets_a_clear_error(exported, images, tmp_path):
    with pytest.raises(ValueError, match="uint8 RGB.*float32"):
        tfseg.predict(exported["tflite"], images[0].astype("float32"))
    with pytest.raises(ValueError, match=r"uint8 RGB.*shape \(90, 120, 4\)"):
        tfseg.predict(exported["saved_model"], np.concatenate([images[0], images[0][..., :1]], -1))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        tfseg.predict(exported["tflite"], str(tmp_path / "broken.png"))
    with pytest.raises(ValueError, match="unknown model 'deeplab_camvid'"):
        tfseg.predict("deeplab_camvid", images[0])
    exported["model"].export(tmp_path / "plain", verbose=False)  # Keras' own export: float input, no labels
    with pytest.raises(ValueError, match="not exported by tfseg"):
        tfseg.predict(tmp_path / "plain", images[0])


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tfseg.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_cli_predicts_folders_and_videos(exported, images, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    video = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (SIZE[1], SIZE[0]))
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        video.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    video.release()
    (tmp_path / "broken.avi").write_bytes(b"not a video")

    done = run_cli("predict", exported["tflite"], folder, "--out", tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote 2 label maps" in done.stdout and "2/2 images" in done.stderr
    assert not [line for line in done.stderr.splitlines() if any(n in line for n in NOISE)]
    expected = tfseg.predict(exported["tflite"], list(images))
    for i in range(2):
        written = cv2.imread(str(tmp_path / "out" / f"f{i}_labels.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written, expected[i])
        assert cv2.imread(str(tmp_path / "out" / f"f{i}_overlay.png")).shape == (*SIZE, 3)

    done = run_cli("predict", exported["saved_model"], tmp_path / "clip.avi", "--out", tmp_path / "video", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "video").iterdir())
    assert written[:4] == ["classes.txt", "clip_000000_labels.png", "clip_000000_overlay.png", "clip_000001_labels.png"]
    assert len(list((tmp_path / "video").glob("*_labels.png"))) == 2

    done = run_cli("predict", exported["tflite"], tmp_path / "broken.avi", "--out", tmp_path / "x", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == (
        f"tfseg predict: error: cannot open video {tmp_path / 'broken.avi'}: not a video file, or a codec OpenCV lacks")
