"""A model ending in tfseg.layers.DenseCRF exports to SavedModel and to TFLite builtins only.

The "portable" implementation (unsorted_segment_sum + gather lattice) is what converts: the
conversion below allows TFLITE_BUILTINS only, so any Flex/select op would make it fail.
Exported at a small fixed size (48x64), and also with dynamic height/width.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

keras = pytest.importorskip("keras")
litert = pytest.importorskip("ai_edge_litert.interpreter")

from tfseg.layers import DenseCRF  # noqa: E402

LABELS = 5


def crf_model(height, width, batch_size=None):
    image = keras.Input((height, width, 3), batch_size=batch_size, dtype="uint8", name="image")
    logits = keras.Input((height, width, LABELS), batch_size=batch_size, name="logits")
    refined = DenseCRF(iterations=5, implementation="portable")([image, logits])
    model = keras.Model([image, logits], refined)
    layer = model.layers[-1]
    rng = np.random.default_rng(0)  # a trained (non-Potts) state, so the weights matter
    layer.compatibility.assign(layer.compatibility.numpy() + rng.normal(0.0, 0.1, (LABELS, LABELS)))
    return model


def sample(batch, height, width, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    image[:, : height // 2] //= 3  # some structure for the bilateral term
    logits = rng.normal(0.0, 2.0, (batch, height, width, LABELS)).astype(np.float32)
    return image, logits


def convert_builtins_only(saved_model_dir):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def run_tflite(model_content, image, logits):
    interpreter = litert.Interpreter(model_content=model_content)
    inputs = interpreter.get_input_details()
    for detail in inputs:
        interpreter.resize_tensor_input(detail["index"], image.shape if detail["dtype"] == np.uint8 else logits.shape)
    interpreter.allocate_tensors()
    for detail in inputs:
        interpreter.set_tensor(detail["index"], image if detail["dtype"] == np.uint8 else logits)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def assert_matches(got, expected):
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-3 * max(1.0, np.abs(expected).max()))
    assert np.mean(got.argmax(-1) == expected.argmax(-1)) > 0.999


def test_fixed_size_model_converts_to_tflite_builtins_and_matches(tmp_path):
    model = crf_model(48, 64, batch_size=1)
    image, logits = sample(1, 48, 64, seed=1)
    expected = model([image, logits]).numpy()
    model.export(tmp_path / "saved_model", verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "saved_model"))
    assert_matches(restored.serve([image, logits]).numpy(), expected)
    tflite = convert_builtins_only(tmp_path / "saved_model")
    assert_matches(run_tflite(tflite, image, logits), expected)


def test_dynamic_size_model_exports_and_converts(tmp_path):
    model = crf_model(None, None)
    model.export(tmp_path / "saved_model", verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "saved_model"))
    tflite = convert_builtins_only(tmp_path / "saved_model")
    for batch, height, width in [(2, 48, 64), (1, 37, 53)]:
        image, logits = sample(batch, height, width, seed=height)
        expected = model([image, logits]).numpy()
        assert_matches(restored.serve([image, logits]).numpy(), expected)
        if batch == 1:
            assert_matches(run_tflite(tflite, image, logits), expected)
