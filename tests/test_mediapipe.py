"""MediaPipe Tasks runs tfseg's TFLite files: the standard metadata written with MediaPipe's own writer,
and ImageSegmenter's category mask and class names against ``tfseg.predict`` and the card.

MediaPipe lives in its own environment (its writer needs numpy 1 and protobuf 4): set
``TFSEG_MEDIAPIPE_PYTHON`` to a Python with ``mediapipe==0.10.21`` (writer and runtime), and
optionally ``TFSEG_MEDIAPIPE_RUNTIME_PYTHON`` to one with the newest mediapipe (runtime only;
its wheels leave the writer out). Without them the MediaPipe tests skip, saying so.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SEGMENT_SCRIPT = Path(__file__).with_name("mediapipe_segment.py")
SAMPLES = sorted((Path(__file__).parents[1] / "zoo" / "samples").glob("*.png"))
WRITER_PYTHON = os.environ.get("TFSEG_MEDIAPIPE_PYTHON")
RUNTIME_PYTHONS = [p for p in (WRITER_PYTHON, os.environ.get("TFSEG_MEDIAPIPE_RUNTIME_PYTHON")) if p]


def _has_mediapipe(python):
    try:
        return subprocess.run([python, "-c", "import mediapipe"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_mediapipe = pytest.mark.skipif(
    not (WRITER_PYTHON and _has_mediapipe(WRITER_PYTHON)),
    reason="MediaPipe is not set up: set TFSEG_MEDIAPIPE_PYTHON to a Python with mediapipe==0.10.21 in its own "
           "environment (README, 'MediaPipe')",
)


def test_without_a_writer_the_error_says_how_to_set_one_up(tmp_path):
    import tfseg
    from tfseg.export.standard_metadata import MetadataWriterMissing, add_standard_metadata
    from tfseg.inference.metadata import ModelInfo, attach
    from tfseg.models.unet import unet

    model = attach(unet(num_classes=3, base_filters=4, depth=2, input_shape=(32, 32, 3)),
                   ModelInfo(class_names=("a", "b", "c")))
    path = tmp_path / "tiny.tflite"
    tfseg.export.tflite(model, path)
    before = path.read_bytes()
    with pytest.raises(MetadataWriterMissing, match=r"no Python at /nowhere/python\. .*mediapipe==0\.10\.21"):
        add_standard_metadata(path, python="/nowhere/python")
    if not _has_mediapipe(sys.executable):
        with pytest.raises(MetadataWriterMissing, match=r"no MediaPipe metadata writer in .*TFSEG_MEDIAPIPE_PYTHON"):
            add_standard_metadata(path, python=sys.executable)
    assert path.read_bytes() == before


def test_cli_refuses_standard_metadata_for_a_saved_model(tmp_path, capsys):
    from tfseg.cli import main

    assert main(["export", "camvid_unet", str(tmp_path / "sm"), "--format", "saved_model", "--standard-metadata"]) == 2
    assert "--standard-metadata applies to --format tflite" in capsys.readouterr().err
    assert not (tmp_path / "sm").exists()


def _segment(python, model, tmp_path):
    out = tmp_path / f"masks-{abs(hash(python))}.npz"
    done = subprocess.run([python, str(SEGMENT_SCRIPT), str(model), str(out), *map(str, SAMPLES)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(out) as masks:
        return answer, [masks[f"arr_{i}"] for i in range(len(SAMPLES))]


@needs_mediapipe
@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_mediapipe_image_segmenter_runs_the_zoo_unet_with_its_class_names(quantization, tmp_path, capsys):
    import tfseg
    from tfseg import zoo
    from tfseg.cli import main
    from tfseg.inference.metadata import read_tflite_info

    card = zoo.card("camvid_unet")
    path = tmp_path / f"camvid_unet_{quantization}.tflite"
    args = ["export", "camvid_unet", str(path), "--format", "tflite", "--input-size", "360x480",
            "--quantization", quantization, "--parity-limit", "1", "--standard-metadata", WRITER_PYTHON]
    if quantization == "int8":
        args += ["--calibration", "camvid:train", "--calibration-limit", "8"]
    assert main(args) == 0
    capsys.readouterr()
    assert read_tflite_info(path.read_bytes()).class_names == card.class_names  # tfseg's own entry kept

    expected = tfseg.predict(str(path), [str(s) for s in SAMPLES])
    for python in RUNTIME_PYTHONS:
        answer, masks = _segment(python, path, tmp_path)
        assert tuple(answer["labels"]) == card.class_names, answer
        for sample, mask, labels in zip(SAMPLES, masks, expected):
            agreement = float(np.mean(mask == labels))
            print(f"mediapipe {answer['mediapipe']} {quantization} {sample.name}: {100 * agreement:.3f}%")
            assert agreement >= 0.999, (python, sample.name, agreement)


@needs_mediapipe
def test_standard_metadata_names_the_model_input_and_label_file(tmp_path):
    import tfseg
    from tfseg.export.standard_metadata import add_standard_metadata
    from tfseg.inference.metadata import ModelInfo, attach
    from tfseg.models.unet import unet

    model = attach(unet(num_classes=3, base_filters=4, depth=2, input_shape=(32, 32, 3)),
                   ModelInfo(class_names=("road", "car", "sky"), dataset="mine"))
    path = tmp_path / "tiny.tflite"
    tfseg.export.tflite(model, path)
    for _ in range(2):  # writing twice replaces the record
        shown = add_standard_metadata(path, python=WRITER_PYTHON, license="CC-BY-4.0", version="7")
    assert (shown["name"], shown["version"], shown["license"], shown["author"]) == ("tiny", "7", "CC-BY-4.0", "tfseg")
    assert "3 classes (mine)" in shown["description"]
    graph = shown["subgraph_metadata"][0]
    image = graph["input_tensor_metadata"][0]
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    assert image["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}
    labels, probabilities = graph["output_tensor_metadata"]
    assert labels["name"] == "labels" and probabilities["name"] == "probabilities"
    assert probabilities["associated_files"][0]["name"] == "labels.txt"
    assert tfseg.predict(str(path), np.zeros((32, 32, 3), np.uint8)).shape == (32, 32)
