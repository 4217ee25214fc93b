"""tfseg.inference: one path for every format (modes, protocol, metadata, sources), batch-independent eval.

The model is the tiny U-Net trained on downscaled CamVid (tests/tiny_camvid.py); references are
the Keras model's own outputs computed image by image with numpy, and CamVid's published colours.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import tfseg
import tfseg.export
from tfseg.data import camvid, open_dataset
from tfseg.data.pipeline import ExampleSource
from tfseg.inference import InputProtocol, ModelInfo, evaluate
from tfseg.inference.metadata import attach, info_of, save_keras_model
from tfseg.inference.models import load_keras_model
from tfseg.inference.sources import load_samples, spread_indices
from tiny_camvid import CLASSES, SIZE, downscaled, trained_model
from training_helpers import REPO, subprocess_env

# Six CamVid val images cut to six different sizes: a batch of them used to be padded together.
CUT_SIZES = ((90, 120), (72, 100), (90, 96), (64, 120), (80, 80), (56, 104))
CAMVID_INFO = ModelInfo(class_names=camvid.CLASS_NAMES, palette=camvid.PALETTE.tolist(), ignore_label=camvid.IGNORE_LABEL,
                        dataset="camvid")


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tfseg.cli", *map(str, args)], capture_output=True, text=True,
                          env=subprocess_env(), cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def model():
    return trained_model()[0]


@pytest.fixture(scope="module")
def cut_dataset(tmp_path_factory):
    """A ``folder`` dataset of CamVid val images (downscaled 4x) cut to ``CUT_SIZES``, void = 11."""
    root = tmp_path_factory.mktemp("cut")
    images, labels = downscaled("val", len(CUT_SIZES), offset=20)
    for folder in ("images", "labels"):
        (root / folder).mkdir()
    for k, ((height, width), image, label) in enumerate(zip(CUT_SIZES, images, labels)):
        cv2.imwrite(str(root / "images" / f"{k}.png"), cv2.cvtColor(image[:height, :width], cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "labels" / f"{k}.png"), label[:height, :width])
    (root / "classes.txt").write_text("\n".join(camvid.CLASS_NAMES) + "\n")
    return root


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    """The tiny model with CamVid's metadata as .keras, SavedModel, dynamic TFLite and (by the CLI) fixed TFLite."""
    folder = tmp_path_factory.mktemp("files")
    camvid_model = attach(tfseg.build_model("unet", CLASSES, base_filters=8, depth=2), CAMVID_INFO)
    camvid_model.set_weights(model.get_weights())
    save_keras_model(camvid_model, folder / "camvid.keras")
    tfseg.export.saved_model(camvid_model, folder / "sm", parity_limit=1)
    tfseg.export.tflite(camvid_model, folder / "dynamic.tflite", parity_limit=1)
    done = run_cli("export", folder / "camvid.keras", folder / "fixed.tflite", "--format", "tflite",
                   "--input-size", f"{SIZE[0]}x{SIZE[1]}", "--parity-limit", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    return {"model": camvid_model, "keras": folder / "camvid.keras", "saved_model": folder / "sm",
            "dynamic": folder / "dynamic.tflite", "fixed": folder / "fixed.tflite", "export_log": done.stderr}


def run_in_process(capsys, *args):
    """``tfseg ARGS`` in this process: (exit status, stderr)."""
    from tfseg.cli import main

    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    return status, capsys.readouterr().err


def cut_source(root):
    return ExampleSource(open_dataset("folder", root, ignore_label=camvid.IGNORE_LABEL), "train")


def keras_confusion(model, source):
    """The confusion matrix of ``model.predict`` on each image alone, counted with numpy."""
    confusion = np.zeros((CLASSES, CLASSES), np.int64)
    for k in range(len(source)):
        image, label = source[k]
        predicted = model.predict(image[None].astype("float32"), verbose=0)[0].argmax(-1)
        valid = label != camvid.IGNORE_LABEL
        np.add.at(confusion, (label[valid].astype(int), predicted[valid]), 1)
    return confusion


def test_eval_scores_do_not_depend_on_batch_size_or_replicas(model, cut_dataset, tmp_path):
    source = cut_source(cut_dataset)
    expected = keras_confusion(model, source)
    for batch_size in (1, 3):
        np.testing.assert_array_equal(evaluate(model, source, batch_size=batch_size).confusion, expected)

    save_keras_model(model, tmp_path / "model.keras")
    done = run_cli("eval", tmp_path / "model.keras", "--dataset", "folder", "--data-root", cut_dataset,
                   "--dataset-options", '{"ignore_label": 11}', "--split", "train", "--batch-size", "3",
                   "--strategy", "mirrored", "--logical-cpus", "2", "--json", "--out", tmp_path / "report")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    np.testing.assert_array_equal(metrics["plain"]["confusion_matrix"], expected)
    printed = json.loads(done.stdout.strip().splitlines()[-1])["plain"]
    assert set(printed["per_class_iou"]) == set(camvid.CLASS_NAMES)
    assert printed["mean_iou"] == pytest.approx(metrics["plain"]["mean_iou"])
    # What it does and how far it is, as lines (stderr is not a terminal here).
    assert "over 2 replica(s)" in done.stderr and "6/6 images" in done.stderr and "\r" not in done.stderr


def test_exported_files_evaluate_like_the_keras_model(model, files, cut_dataset, capsys):
    source = cut_source(cut_dataset)
    keras_result = evaluate(model, source)
    saved = evaluate(str(files["saved_model"]), source, batch_size=3)
    lite = evaluate(str(files["dynamic"]), source, batch_size=3)
    np.testing.assert_array_equal(saved.confusion, keras_result.confusion)
    assert abs(lite.scores["mean_iou"] - keras_result.scores["mean_iou"]) < 0.002
    assert np.abs(lite.confusion - keras_result.confusion).sum() <= 0.002 * keras_result.confusion.sum()

    for command in ("eval", "predict"):
        status, err = run_in_process(capsys, command, files["dynamic"], *(["--out", "x"] if command == "predict" else []),
                                     *(["x"] if command == "predict" else []), "--threads", "0")
        assert status == 2 and "--threads: expected a positive integer; got '0'" in err
    with pytest.raises(ValueError, match=r"num_threads \(--threads\) must be a positive integer; got 0"):
        tfseg.predict(model, source[0][0], num_threads=0)


def test_inference_modes_run_on_files_as_on_the_keras_model(model, files, capsys):
    images = [cv2.resize(image, (180, 135), interpolation=cv2.INTER_LINEAR) for image in downscaled("val", 2, 40)[0]]
    multi = {"scales": (0.75, 1.25), "flip": True}
    for image in images:
        keras_labels = tfseg.predict(model, image, **multi)
        assert np.mean(keras_labels != tfseg.predict(model, image)) > 0.005  # the modes change the labels
        assert np.mean(tfseg.predict(str(files["dynamic"]), image, **multi) == keras_labels) > 0.995
        # A fixed-size file runs a sliding window of its own size.
        windowed = tfseg.predict(model, image, window=SIZE)
        assert np.mean(tfseg.predict(str(files["fixed"]), image, window=SIZE) == windowed) > 0.995
    with pytest.raises(ValueError, match=r"fixed.tflite takes only 90x120 images: multi-scale"):
        tfseg.predict(str(files["fixed"]), images[0], scales=(0.5, 1.0))
    with pytest.raises(ValueError, match="sliding-window inference runs at scale 1.0 without flips"):
        tfseg.predict(model, images[0], window=(48, 64), flip=True)
    status, err = run_in_process(capsys, "eval", files["dynamic"], "--window", "48x64", "--flip")
    assert status == 2
    assert err.strip().splitlines()[-1] == ("tfseg eval: error: sliding-window inference runs at scale 1.0 without "
                                            "flips: drop scales/flip or the window")


def test_a_canvas_protocol_pads_every_format_and_is_carried_by_the_file(model, tmp_path):
    canvas = (96, 128)
    padded_model = attach(tfseg.build_model("unet", CLASSES, base_filters=8, depth=2),
                          ModelInfo(protocol=InputProtocol(canvas=canvas)))
    padded_model.set_weights(model.get_weights())
    image = downscaled("val", 1, offset=60)[0][0][:70, :100]
    on_canvas = np.full((*canvas, 3), 127.5, np.float32)
    on_canvas[:70, :100] = image
    expected = model.predict(on_canvas[None], verbose=0)[0, :70, :100].argmax(-1)
    np.testing.assert_array_equal(tfseg.predict(padded_model, image), expected)
    whole = tfseg.predict(padded_model, image, protocol=InputProtocol())
    np.testing.assert_array_equal(whole, model.predict(image[None].astype("float32"), verbose=0)[0].argmax(-1))
    assert np.mean(whole != expected) > 0.005  # the padding reaches the logits: the protocol matters

    report = tfseg.export.tflite(padded_model, tmp_path / "canvas.tflite", parity_data=[image])
    assert report["images"]["size"] == "as given" and "padded to 96x128" in report["protocol"]
    lite = tfseg.inference.Predictor(str(tmp_path / "canvas.tflite"))
    assert lite.runner.input_size == canvas and lite.protocol == InputProtocol(canvas=canvas)
    # The file sees the pad as 128 (uint8), the Keras model 127.5.
    assert np.mean(lite(image)[0] == expected) > 0.995


def test_metadata_travels_and_predict_uses_the_camvid_colours(files, tmp_path):
    assert info_of(load_keras_model(files["keras"])) == CAMVID_INFO
    for key in ("saved_model", "dynamic", "fixed"):
        assert tfseg.inference.load_runner(str(files[key])).info == CAMVID_INFO, key
    assert "converting to TFLite" in files["export_log"] and "checking parity" in files["export_log"]

    images, _ = downscaled("val", 2, offset=80)
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, image in enumerate(images):
        cv2.imwrite(str(folder / f"f{k}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    done = run_cli("predict", files["fixed"], folder, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (tmp_path / "out" / "classes.txt").read_text().splitlines()
    assert lines == [f"{k} {name} {r} {g} {b}" for k, (name, (r, g, b)) in enumerate(zip(camvid.CLASS_NAMES, camvid.PALETTE))]
    assert (tmp_path / "out" / "legend.png").is_file()
    for k, image in enumerate(images):
        labels = cv2.imread(str(tmp_path / "out" / f"f{k}_labels.png"), cv2.IMREAD_UNCHANGED)
        overlay = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / f"f{k}_overlay.png")), cv2.COLOR_BGR2RGB)
        expected = np.round(0.5 * image + 0.5 * camvid.PALETTE[labels]).astype(np.uint8)
        np.testing.assert_array_equal(overlay, expected)


def test_dataset_sources_for_every_reader_and_a_spread_calibration_sample(tmp_path, monkeypatch):
    from test_datasets import write_cityscapes, write_voc

    from tfseg.data import read_pair

    monkeypatch.setenv("TFSEG_VOC_DIR", str(write_voc(tmp_path / "voc")))
    monkeypatch.setenv("TFSEG_CITYSCAPES_DIR", str(write_cityscapes(tmp_path / "cityscapes")))
    ade = tmp_path / "ade" / "ADEChallengeData2016"
    for folder in ("images/validation", "annotations/validation"):
        (ade / folder).mkdir(parents=True)
    cv2.imwrite(str(ade / "images/validation/ADE_val_00000001.jpg"), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(ade / "annotations/validation/ADE_val_00000001.png"), np.array([[0, 1, 150, 2, 0, 3]] * 4, np.uint8))
    (ade / "images/training").mkdir()
    (ade / "annotations/training").mkdir()
    cv2.imwrite(str(ade / "images/training/ADE_train_00000001.jpg"), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(ade / "annotations/training/ADE_train_00000001.png"), np.zeros((4, 6), np.uint8))
    monkeypatch.setenv("TFSEG_ADE20K_DIR", str(tmp_path / "ade"))
    for source, name in (("voc:val", "voc"), ("cityscapes:val:1", "cityscapes"), ("ade20k:val", "ade20k")):
        samples = load_samples(source)
        dataset = open_dataset(name)
        pairs = dataset.files("val")[: len(samples)]
        assert samples and len(samples) == (1 if name != "voc" else len(dataset.files("val")))
        for sample, pair in zip(samples, pairs):
            np.testing.assert_array_equal(sample.label, read_pair(*pair, dataset)[1])
            assert sample.ignore_label == dataset.ignore_label
    official = load_samples("ade20k:val", reader_options={"reduce_zero_label": False})[0]
    np.testing.assert_array_equal(official.label[0], [0, 1, 150, 2, 0, 3])
    mine = tmp_path / "mine"
    for k in range(3):
        for folder, data in (("images", np.full((4, 6, 3), 10 * k, np.uint8)), ("labels", np.full((4, 6), k, np.uint8))):
            (mine / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mine / folder / f"{k}.png"), data)
    (mine / "classes.txt").write_text("a\nb\nc\n")
    samples = load_samples(f"folder:{mine}:train:2")
    assert [s.name for s in samples] == ["0", "1"] and samples[1].label.max() == 1 and samples[1].ignore_label == 255

    # A spread sample of CamVid train reaches every sequence (the first 100 are 62 dusk frames and 38 of 0006R0).
    pairs = camvid.split_files("train")
    chosen = spread_indices(len(pairs), 100, seed=0)
    assert chosen == sorted(set(chosen)) and len(chosen) == 100 and chosen == spread_indices(len(pairs), 100, seed=0)
    sequences = [camvid.sequence_of(pairs[i][0]) for i in chosen]
    assert {s: sequences.count(s) for s in set(sequences)} == pytest.approx({"0001TP": 17, "0006R0": 28, "0016E5": 55},
                                                                            abs=2)
    first = {camvid.sequence_of(p[0]) for p in pairs[:100]}
    assert "0016E5" not in first


def test_progress_is_redrawn_on_a_terminal_and_written_as_lines_elsewhere():
    from tfseg.commands.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, expected in ((io.StringIO(), "lines"), (Terminal(), "redrawn")):
        with Progress(3, "images", stream=stream, line_every=0.0) as bar:
            for _ in range(3):
                bar.update()
        text = stream.getvalue()
        if expected == "lines":
            assert "\r" not in text and text.splitlines()[-1].startswith("[") and "3/3 images" in text
            assert len(text.splitlines()) == 3
        else:
            assert text.count("\r") == 3 and text.endswith("\n")


def test_layering_inference_never_imports_export_and_backbones_never_import_zoo():
    import ast

    def imported(package):
        names = []
        for path in (REPO / "tfseg" / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names += [f"{path.name}: {node.module}"] + [f"{path.name}: {node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names += [f"{path.name}: {a.name}" for a in node.names]
        return names

    assert not [n for n in imported("inference") if "tfseg.export" in n]
    assert not [n for n in imported("backbones") if "tfseg.zoo" in n]
