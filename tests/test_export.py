"""SavedModel and TFLite export: uint8 pixels in, labels out, parity with the Keras model on CamVid val.

The model is a tiny U-Net trained briefly on downscaled CamVid (tests/tiny_camvid.py), so its labels
are not ties between random logits. References are the Keras model's own outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfseg
import tfseg.export
from tfseg.export.tflite_ops import UnsupportedOpsError, check_builtins_only, float_compute_ops, op_counts, operators
from tiny_camvid import CLASSES, SIZE, downscaled, trained_model

litert = pytest.importorskip("ai_edge_litert.interpreter")


@pytest.fixture(scope="module")
def model():
    return trained_model()[0]


@pytest.fixture(scope="module")
def val():
    return downscaled("val", 4)


def keras_labels(model, images):
    return model.predict(images.astype("float32"), verbose=0).argmax(-1)


def test_saved_model_runs_without_tfseg_and_matches_keras(model, val, tmp_path):
    images, _ = val
    report = tfseg.export.saved_model(model, tmp_path / "sm", parity_data="camvid:val:3")
    entry = report["formats"]["saved_model"]
    assert report["images"]["count"] == 3 and report["reference"] == "keras"
    assert entry["pixel_agreement"] == 100.0 and entry["mean_iou_change"] == 0.0
    assert json.loads((tmp_path / "sm.parity.json").read_text()) == report
    assert "saved_model" in (tmp_path / "sm.parity.txt").read_text()

    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tfseg"] = None  # importing tfseg now fails: the SavedModel must stand alone
        import numpy as np, tensorflow as tf
        serve = tf.saved_model.load({str(tmp_path / "sm")!r}).signatures["serving_default"]
        images = np.load({str(tmp_path / "images.npy")!r})
        out = serve(image=tf.constant(images))
        np.save({str(tmp_path / "labels.npy")!r}, out["labels"].numpy())
        print(out["labels"].dtype.name, out["probabilities"].shape)
        for bad in (images.astype("float32"), np.concatenate([images, images[..., :1]], -1)):
            try:
                serve(image=tf.constant(bad))
            except Exception as error:
                print("ERROR", str(error).splitlines()[0][:300], "|", "channel count" in str(error))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"int32 (4, {SIZE[0]}, {SIZE[1]}, {CLASSES})"
    assert "expected to be a uint8 tensor but is a float tensor" in lines[1]
    assert lines[2].endswith("| True")  # the channel check's own message, not a conv error
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), keras_labels(model, images))


def test_tflite_float_fixed_and_dynamic_size(model, val, tmp_path):
    images, _ = val
    fixed = tfseg.export.tflite(model, tmp_path / "fixed.tflite", input_size=SIZE, parity_data=list(images))
    dynamic = tfseg.export.tflite(model, tmp_path / "dynamic.tflite", parity_data="camvid:val:2")
    assert fixed["formats"]["tflite"]["pixel_agreement"] >= 99.9
    assert dynamic["formats"]["tflite"]["pixel_agreement"] >= 99.9
    assert dynamic["images"]["size"] == "as given"  # ran at CamVid's 360x480
    for name, shape in (("fixed", [1, *SIZE, 3]), ("dynamic", [1, -1, -1, 3])):
        content = (tmp_path / f"{name}.tflite").read_bytes()
        check_builtins_only(content)
        interpreter = litert.Interpreter(model_content=content)
        detail = interpreter.get_input_details()[0]
        assert detail["dtype"] == np.uint8 and detail["quantization"] == (0.0, 0)
        assert detail["shape_signature"].tolist() == shape
    # The fixed-size graph has no run-time shape arithmetic left.
    assert "SHAPE" not in op_counts((tmp_path / "fixed.tflite").read_bytes())


def test_int8_is_full_integer_on_raw_pixels_and_keeps_val_miou(model, tmp_path):
    import cv2

    images, labels = downscaled("train", 16, 100)
    labels = np.where(labels == CLASSES, 255, labels)  # the folder layout's void
    for folder, data in (("images", images), ("labels", labels)):
        (tmp_path / "train" / folder).mkdir(parents=True)
        for k, item in enumerate(data):
            cv2.imwrite(str(tmp_path / "train" / folder / f"{k:02d}.png"), item[..., ::-1] if item.ndim == 3 else item)
    (tmp_path / "train" / "classes.txt").write_text("\n".join(str(k) for k in range(CLASSES)))
    report = tfseg.export.tflite(
        model, tmp_path / "int8.tflite", quantization="int8", representative_data=f"folder:{tmp_path / 'train'}",
        calibration_limit=8, input_size=SIZE, parity_data="camvid:val:6")
    # Calibrated on a seeded sample spread over the split (one of each two images), named in the report.
    calibration = report["calibration"]
    assert calibration["count"] == 8 and "at most 8 spread over it, seed 0" in calibration["source"]
    assert sorted(int(name) // 2 for name in calibration["images"]) == list(range(8))
    assert "int8 calibration: 8 images" in (tmp_path / "int8.tflite.parity.txt").read_text()
    content = (tmp_path / "int8.tflite").read_bytes()
    assert float_compute_ops(content) == {}
    assert op_counts(content)["CONV_2D"] >= 10
    # Labels from ARG_MAX on the int8 logits; the softmax alone in float, on the dequantised logits.
    tail = {op.name: op.input_types[0] for op in operators(content) if op.name in ("ARG_MAX", "SOFTMAX")}
    assert tail == {"ARG_MAX": "INT8", "SOFTMAX": "FLOAT32"}
    detail = litert.Interpreter(model_content=content).get_input_details()[0]
    assert detail["dtype"] == np.uint8 and detail["quantization"] == (0.0, 0)  # raw pixels, not quantised values
    entry = report["formats"]["tflite (int8)"]
    # It learned something: a constant label map scores about 3 mIoU on these images.
    assert report["reference_mean_iou"] > 6
    assert entry["pixel_agreement"] > 90
    assert abs(entry["mean_iou_change"]) < 2.0


def test_int8_needs_calibration_data_and_refuses_the_crf(model, tmp_path):
    with pytest.raises(ValueError, match="needs calibration images"):
        tfseg.export.tflite(model, tmp_path / "a.tflite", quantization="int8")
    with pytest.raises(ValueError, match="does not survive int8"):
        tfseg.export.tflite(model, tmp_path / "a.tflite", quantization="int8", representative_data="camvid:train:2",
                            crf=True)
    with pytest.raises(ValueError, match="no image files"):
        tfseg.export.tflite(model, tmp_path / "a.tflite", quantization="int8", representative_data=tmp_path)
    with pytest.raises(ValueError, match="quantization='int4'"):
        tfseg.export.tflite(model, tmp_path / "a.tflite", quantization="int4")
    assert not (tmp_path / "a.tflite").exists()


@keras.saving.register_keras_serializable(package="tfseg_tests")
class CumulativeProduct(keras.layers.Layer):
    def call(self, x):
        return tf.math.cumprod(x, axis=-1)


def test_ops_outside_the_builtins_are_named(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = tfseg.layers.ImagePreprocessing("tf")(inputs)
    x = keras.layers.Conv2D(4, 1)(CumulativeProduct(name="cumulative")(x))
    model = keras.Model(inputs, x)
    with pytest.raises(UnsupportedOpsError, match=r"tf\.Cumprod \(at .*cumulative") as error:
        tfseg.export.tflite(model, tmp_path / "flex.tflite")
    assert not (tmp_path / "flex.tflite").exists()
    assert error.value.ops[0].startswith("tf.Cumprod")

    # The file check names Flex ops of a file converted with them allowed.
    concrete = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec([1, 16, 16, 3], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    with pytest.raises(UnsupportedOpsError, match="FlexCumprod"):
        check_builtins_only(converter.convert())


def test_models_without_rgb_input_or_preprocessing_are_refused(tmp_path):
    gray = tfseg.build_model("unet", 2, (None, None, 1), base_filters=4, depth=2)
    with pytest.raises(ValueError, match=r"RGB images \[batch, height, width, 3\]"):
        tfseg.export.saved_model(gray, tmp_path / "gray")
    bare = tfseg.build_model("unet", 2, base_filters=4, depth=2, include_preprocessing=False)
    with pytest.raises(ValueError, match="no ImagePreprocessing layer"):
        tfseg.export.tflite(bare, tmp_path / "bare.tflite")


def test_crf_inside_the_tflite_file_matches_keras_with_the_crf(model, tmp_path):
    crf = tfseg.layers.DenseCRF(bilateral_sxy=20.0, bilateral_srgb=10.0, iterations=3)
    lite = tfseg.export.tflite(model, tmp_path / "crf.tflite", crf=crf, input_size=(48, 64), parity_limit=2)
    assert lite["formats"]["tflite"]["pixel_agreement"] >= 99.9
    assert op_counts((tmp_path / "crf.tflite").read_bytes()).get("UNSORTED_SEGMENT_SUM", 0) > 0  # the lattice
    # The file says it holds a CRF, so a second one is refused.
    image = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"crf.tflite already holds a dense CRF \(.*'bilateral_sxy': 20.0"):
        tfseg.predict(str(tmp_path / "crf.tflite"), image, crf=True)
    assert tfseg.predict(str(tmp_path / "crf.tflite"), image).shape == (48, 64)


@pytest.mark.slow
def test_deeplab_v3plus_with_crf_exports_to_both_and_matches_keras_with_crf(tmp_path):
    model = tfseg.build_model("deeplab_v3plus", 5, backbone="mobilenet_v2")
    crf = tfseg.layers.DenseCRF(bilateral_sxy=20.0, bilateral_srgb=10.0, iterations=5)
    saved = tfseg.export.saved_model(model, tmp_path / "crf_sm", crf=crf)
    lite = tfseg.export.tflite(model, tmp_path / "crf.tflite", crf=crf, input_size=(72, 96))
    assert saved["formats"]["saved_model"]["pixel_agreement"] == 100.0
    assert lite["formats"]["tflite"]["pixel_agreement"] >= 99.9
    counts = op_counts((tmp_path / "crf.tflite").read_bytes())
    assert counts.get("UNSORTED_SEGMENT_SUM", 0) > 0  # the lattice is in the file
    # The reference really ran the CRF: its labels differ from the model's alone.
    from tfseg.inference.sources import synthetic_samples

    image = synthetic_samples(1, (72, 96))[0].image
    assert np.mean(tfseg.predict(model, image, crf=crf) != tfseg.predict(model, image)) > 0.01


def test_cli_calibration_from_a_folder_is_spread_and_counted(model, tmp_path, capfd):
    """A plain folder of sequential frames: --calibration-limit 2 takes two spread over it, and says 2."""
    from tfseg.cli import main

    images, _ = downscaled("val", 6)
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, image in enumerate(images):
        cv2.imwrite(str(folder / f"frame_{k:02d}.png"), image[..., ::-1])
    model.save(tmp_path / "model.keras")
    code = main(["export", str(tmp_path / "model.keras"), str(tmp_path / "int8.tflite"), "--format", "tflite",
                 "--quantization", "int8", "--calibration", str(folder), "--calibration-limit", "2",
                 "--input-size", f"{SIZE[0]}x{SIZE[1]}", "--parity-limit", "1"])
    assert code == 0
    err = capfd.readouterr().err
    assert f"reading 2 calibration images from {folder}" in err
    report = json.loads((tmp_path / "int8.tflite.parity.json").read_text())["calibration"]
    assert report["count"] == 2 and "at most 2 spread over it, seed 0" in report["source"]
    # one from each half of the six frames, not the first two
    assert [int(name[-2:]) // 3 for name in report["images"]] == [0, 1]
