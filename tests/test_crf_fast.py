"""The dense CRF's fast mode (``DenseCRF(downsample=f)``) against references computed at the same resolution.

The reference is pydensecrf2 (the C++ code) run on the f x f block averages of the image and the
logits with the kernel widths divided by f, its pairwise term upsampled by OpenCV's bilinear
resize (half-pixel centres) and added to the full-size logits: what the fast mode promises,
computed by independent code. The image is made of f x f blocks of one colour, so its block
averages are the uint8 pixels pydensecrf2 takes. Also: builtin-only TFLite conversion, the
modes' plumbing (cards, ``--crf [fast|exact]``) and the mode refused where it is not one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tfseg.data.camvid import IGNORE_LABEL, NUM_CLASSES, load_split
from tfseg.layers import DenseCRF

try:
    import pydensecrf.densecrf as dcrf
except ImportError:
    dcrf = None

PARAMS = dict(gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=20.0, bilateral_srgb=3.0, bilateral_compat=5.0)


def corrupted_unary(label, seed):
    path = Path(__file__).resolve().parents[1] / "tools" / "crf_unaries.py"
    spec = importlib.util.spec_from_file_location("crf_unaries", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.corrupted_unary(label, NUM_CLASSES, ignore_label=IGNORE_LABEL, seed=seed)


def block_image_and_logits(factor):
    """A CamVid val image of factor x factor blocks (360x480) and logits from its corrupted ground truth."""
    images, labels = load_split("val", limit=1)
    height, width = images[0].shape[:2]
    small = cv2.resize(images[0], (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    image = np.repeat(np.repeat(small, factor, axis=0), factor, axis=1)
    logits = -corrupted_unary(labels[0], seed=0)
    return image, logits.astype(np.float32)


def reference_fast_scores(image, logits, factor, iterations):
    """Full-size scores of the fast mode computed by pydensecrf2 at 1/factor and OpenCV's upsampling."""
    height, width, labels = logits.shape
    small_image = np.ascontiguousarray(image[::factor, ::factor])
    pooled = logits.reshape(height // factor, factor, width // factor, factor, labels).mean(axis=(1, 3))
    h, w = pooled.shape[:2]
    crf = dcrf.DenseCRF2D(w, h, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(-pooled.reshape(-1, labels).T))
    crf.addPairwiseGaussian(sxy=PARAMS["gaussian_sxy"] / factor, compat=PARAMS["gaussian_compat"])
    crf.addPairwiseBilateral(sxy=PARAMS["bilateral_sxy"] / factor, srgb=PARAMS["bilateral_srgb"], rgbim=small_image,
                             compat=PARAMS["bilateral_compat"])
    marginals = np.array(crf.inference(iterations)).T.reshape(h, w, labels)
    # log Q = scores up to a per-pixel constant, which bilinear upsampling keeps per-pixel constant.
    pairwise = np.log(np.maximum(marginals, 1e-30)) - pooled
    upsampled = np.stack([cv2.resize(pairwise[..., k], (width, height), interpolation=cv2.INTER_LINEAR)
                          for k in range(labels)], axis=-1)
    return logits + upsampled


@pytest.mark.skipif(dcrf is None, reason="pydensecrf2 (the oracle) is not installed")
@pytest.mark.parametrize("factor", [2, 4])
def test_fast_mode_matches_pydensecrf_at_the_reduced_resolution(factor):
    image, logits = block_image_and_logits(factor)
    iterations = 5
    expected = reference_fast_scores(image, logits, factor, iterations).argmax(-1)
    for implementation in ("fast", "portable"):
        layer = DenseCRF(**PARAMS, iterations=iterations, downsample=factor, implementation=implementation)
        got = layer([image[None], logits[None]]).numpy()[0].argmax(-1)
        agreement = np.mean(got == expected)
        print(f"downsample {factor}, {implementation}: label agreement with pydensecrf2 at 1/{factor} {agreement:.5f}")
        assert agreement >= 0.995, (implementation, agreement)
    # the CRF did something: the reference differs from the logits' own labels
    assert np.mean(expected != logits.argmax(-1)) > 0.05


def test_fast_mode_keeps_full_resolution_detail_and_is_not_the_exact_mode():
    """With no pairwise weight the fast mode returns the logits unchanged (their detail is not pooled away)."""
    image, logits = block_image_and_logits(4)
    silent = DenseCRF(**{**PARAMS, "gaussian_compat": 0.0, "bilateral_compat": 0.0}, iterations=3, downsample=4)
    np.testing.assert_allclose(silent([image[None], logits[None]]).numpy()[0], logits, atol=1e-5)
    fast = DenseCRF(**PARAMS, iterations=3, downsample=4)([image[None], logits[None]]).numpy()[0]
    exact = DenseCRF(**PARAMS, iterations=3)([image[None], logits[None]]).numpy()[0]
    assert 0.0 < np.mean(fast.argmax(-1) != exact.argmax(-1)) < 0.1


def test_fast_mode_odd_sizes_and_dynamic_shapes():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    logits = rng.normal(0.0, 2.0, (2, 37, 53, 4)).astype(np.float32)
    layer = DenseCRF(**PARAMS, iterations=2, downsample=4)
    eager = layer([image, logits]).numpy()
    assert eager.shape == logits.shape and np.isfinite(eager).all()
    dynamic = tf.function(lambda a, b: layer([a, b]), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8), tf.TensorSpec([None, None, None, 4], tf.float32)])
    np.testing.assert_allclose(dynamic(image, logits).numpy(), eager, atol=1e-4)
    single = layer([image[1:], logits[1:]]).numpy()
    np.testing.assert_allclose(single, eager[1:], atol=1e-4)  # images of a batch never mix


def test_fast_mode_converts_to_tflite_builtins_only_and_matches_tf():
    import keras
    from ai_edge_litert.interpreter import Interpreter

    height, width, labels = 64, 96, 5
    image_in = keras.Input((height, width, 3), batch_size=1, dtype="uint8")
    logits_in = keras.Input((height, width, labels), batch_size=1)
    crf = DenseCRF(**PARAMS, iterations=3, downsample=4, implementation="portable")
    model = keras.Model([image_in, logits_in], crf([image_in, logits_in]))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    image[:, : height // 2] //= 3
    logits = rng.normal(0.0, 2.0, (1, height, width, labels)).astype(np.float32)
    function = tf.function(lambda a, b: model([a, b])).get_concrete_function(
        tf.TensorSpec(image.shape, tf.uint8), tf.TensorSpec(logits.shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # a Flex op would fail here
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], image if detail["dtype"] == np.uint8 else logits)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = model([image, logits]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("value", [0, 1.5, -2, "4", True])
def test_bad_downsample_is_refused_naming_the_argument(value):
    with pytest.raises(ValueError, match="downsample"):
        DenseCRF(downsample=value)


def test_layer_reports_its_mode_and_round_trips_it():
    fast = DenseCRF(**PARAMS, iterations=3, downsample=4)
    assert fast.mode == "fast" and "1/4 resolution" in fast.describe()
    assert DenseCRF().mode == "exact"
    assert DenseCRF.from_config(fast.get_config()).downsample == 4


def test_a_zero_compat_leaves_its_kernel_out_of_the_layer():
    """The fast mode drops the Gaussian kernel (sub-pixel at 1/4): no weights, and dense_crf's single-kernel result."""
    from tfseg.crf import dense_crf

    image, logits = block_image_and_logits(4)
    image, logits = image[:48, :64], logits[:48, :64]
    layer = DenseCRF(**{**PARAMS, "gaussian_compat": 0}, iterations=3)
    got = tf.nn.softmax(layer([image[None], logits[None]])).numpy()[0]
    assert {w.name for w in layer.weights} == {"bilateral_kernel_weights", "compatibility"}
    expected = dense_crf(image, -logits, **{**PARAMS, "gaussian_compat": 0}, iterations=3).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_modes_resolve_to_the_cards_options_or_tfsegs():
    import tfseg
    from tfseg.inference.metadata import ModelInfo
    from tfseg.inference.runners import requested_crf
    from tfseg.layers.dense_crf import FAST_MODE

    card = tfseg.zoo.card("camvid_unet")
    zoo_info = ModelInfo(source="zoo:camvid_unet")
    assert requested_crf("exact", zoo_info) == card.crf == requested_crf(True, zoo_info)
    assert requested_crf("fast", zoo_info) == card.crf_options("fast")
    assert DenseCRF(**requested_crf("fast", zoo_info)).mode == "fast"
    assert requested_crf("fast", ModelInfo()) == FAST_MODE and requested_crf("exact", None) == {}
    with pytest.raises(ValueError, match=r"CRF mode 'quick'; valid: \['exact', 'fast'\]"):
        requested_crf("quick", zoo_info)


def test_cli_crf_flag_means_the_fast_mode_and_takes_exact():
    from tfseg.cli import build_parser

    parser = build_parser()
    for command in (["export", "m", "o", "--format", "tflite"], ["predict", "m", "i", "--out", "o"], ["eval", "m"]):
        assert parser.parse_args(command + ["--crf"]).crf == "fast"
        assert parser.parse_args(command + ["--crf", "exact"]).crf == "exact"
        assert parser.parse_args(command).crf is None
        with pytest.raises(SystemExit):
            parser.parse_args(command + ["--crf", "quick"])
    from argparse import Namespace

    from tfseg.commands.eval import crf_options

    with pytest.raises(ValueError, match="--crf-params applies with --crf"):
        crf_options(Namespace(crf=None, crf_params='{"iterations": 3}'))
    assert crf_options(Namespace(crf="fast", crf_params='{"iterations": 3}')) == {"iterations": 3}
