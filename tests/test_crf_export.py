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


def convert_function_builtins_only(function, shapes):
    """TFLite flatbuffer of a tf.function of (uint8 image, float32 unary) with builtin ops only."""
    specs = [tf.TensorSpec(shapes[0], tf.uint8), tf.TensorSpec(shapes[1], tf.float32)]
    concrete = tf.function(function, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def camvid_crop_cases():
    """A CamVid val crop with a corrupted ground-truth unary, and uniform noise with the same unary."""
    import importlib.util
    from pathlib import Path

    from tfseg.data.camvid import load_split

    path = Path(__file__).resolve().parents[1] / "tools" / "crf_unaries.py"
    spec = importlib.util.spec_from_file_location("crf_unaries", path)
    unaries = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unaries)
    images, labels = load_split("val", limit=1)
    image, label = images[0][140:236, 176:304], labels[0][140:236, 176:304]  # 96x128
    unary = unaries.corrupted_unary(label, 12, seed=0)
    noisy = np.random.default_rng(0).integers(0, 256, image.shape, dtype=np.uint8)
    return [("camvid", image, unary), ("noisy", noisy, unary)]


@pytest.mark.parametrize("dynamic_size", [False, True], ids=["fixed-size", "dynamic-size"])
def test_portable_dense_crf_in_litert_matches_tf_and_pydensecrf(dynamic_size):
    """dense_crf(implementation="portable") in the interpreter: TF's marginals, pydensecrf2's labels.

    The fixed-size file carries the spatial lattice as constants, the dynamic-size file builds it.
    """
    from tfseg.crf import dense_crf

    params = dict(gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=80.0, bilateral_srgb=13.0,
                  bilateral_compat=10.0, iterations=5, implementation="portable")
    cases = camvid_crop_cases()
    height, width = cases[0][1].shape[:2]
    shape = (None, None) if dynamic_size else (height, width)
    content = convert_function_builtins_only(lambda image, unary: dense_crf(image, unary, **params),
                                             [(1,) + shape + (3,), (1,) + shape + (12,)])
    for name, image, unary in cases:
        got = run_tflite(content, image[None], unary[None])[0]
        expected = dense_crf(image, unary, **params).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4)
        try:
            import pydensecrf.densecrf as dcrf
        except ImportError:
            continue
        crf = dcrf.DenseCRF2D(width, height, 12)
        crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(-1, 12).T))
        crf.addPairwiseGaussian(sxy=3.0, compat=3.0)
        crf.addPairwiseBilateral(sxy=80.0, srgb=13.0, rgbim=np.ascontiguousarray(image), compat=10.0)
        reference = np.array(crf.inference(5)).T.reshape(height, width, 12)
        agreement = np.mean(got.argmax(-1) == reference.argmax(-1))
        print(f"{name}: TFLite vs pydensecrf2 label agreement {agreement:.5f}")
        assert agreement >= 0.999, (name, agreement)


def test_overflowing_lattice_keys_give_nan_in_litert():
    """TFLite drops assertions: keys that would overflow int64 make the output NaN instead of wrong."""
    from tfseg.crf import dense_crf

    content = convert_function_builtins_only(
        lambda image, unary: dense_crf(image, unary, bilateral_sxy=1e-4, bilateral_srgb=1e-4, iterations=1,
                                       implementation="portable"), [(1, 6, 7, 3), (1, 6, 7, 2)])
    rng = np.random.default_rng(12)
    image = rng.integers(0, 256, (1, 6, 7, 3), dtype=np.uint8)
    unary = rng.uniform(0.0, 3.0, (1, 6, 7, 2)).astype(np.float32)
    assert np.isnan(run_tflite(content, image, unary)).all()
