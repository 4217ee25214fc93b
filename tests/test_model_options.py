"""Builder options are never silently ignored; inputs are checked when the model is built.

multi_grid on Xception, numpy integers, input channels against the preprocessing, float32 logits
under mixed precision, and the ImageNet MobileNetV2 reachable through ``build_model``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings

import h5py
import keras
import numpy as np
import pytest

import tfseg
from tfseg.backbones import weights as W


def _exit_flow_rates(model, backbone):
    xception = model.get_layer(backbone)
    return [xception.get_layer(f"exit_flow_block2_unit1_sepconv{i}_depthwise").dilation_rate[0] for i in (1, 2, 3)]


def test_explicit_multi_grid_reaches_an_xception_backbone_in_deeplab_v3():
    # Output stride 16: the last exit-flow unit runs at rate 2, times the multi-grid rates.
    assert _exit_flow_rates(tfseg.build_model("deeplab_v3", 3, backbone="xception41", multi_grid=(1, 2, 4)),
                            "xception41") == [2, 4, 8]
    assert _exit_flow_rates(tfseg.build_model("deeplab_v3", 3, backbone="xception41"), "xception41") == [2, 2, 2]


def test_resnet_keeps_multi_grid_1_2_4_by_default_in_deeplab_v3():
    resnet = tfseg.build_model("deeplab_v3", 3, backbone="resnet50").get_layer("resnet50")
    assert [resnet.get_layer(f"conv5_block{u}_2_conv").dilation_rate[0] for u in (1, 2, 3)] == [2, 4, 8]
    resnet = tfseg.build_model("deeplab_v3", 3, backbone="resnet50", multi_grid=(1, 1, 1)).get_layer("resnet50")
    assert [resnet.get_layer(f"conv5_block{u}_2_conv").dilation_rate[0] for u in (1, 2, 3)] == [2, 2, 2]
    with pytest.raises(ValueError, match="multi_grid applies to ResNet and Xception"):
        tfseg.build_model("deeplab_v3", 3, backbone="mobilenet_v2", multi_grid=(1, 2, 4))


@pytest.mark.parametrize("num_classes", [np.int64(3), np.int32(3), np.uint8(3)])
def test_numpy_integers_are_accepted(num_classes):
    model = tfseg.build_model("unet", num_classes, (np.int64(32), 48, np.int32(3)), base_filters=4)
    assert model.output.shape == (None, 32, 48, 3)
    assert type(model.get_layer("logits").filters) is int


@pytest.mark.parametrize("num_classes", [True, 3.0, 0, "3", np.float32(3)])
def test_non_integer_class_counts_are_refused(num_classes):
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        tfseg.build_model("unet", num_classes, base_filters=4)


@pytest.mark.parametrize(
    "name,options,input_shape",
    [
        ("deeplab_v3", {"backbone": "resnet50"}, (64, 64, 1)),
        ("deeplab_v2", {"backbone": "vgg16"}, (None, None, 4)),
        ("fcn8s", {}, (None, None, 1)),
    ],
)
def test_input_channels_that_do_not_fit_the_preprocessing_fail_at_build_time(name, options, input_shape):
    with pytest.raises(ValueError, match=rf"'caffe' preprocessing .* 3 channels, got {input_shape[2]}"):
        tfseg.build_model(name, 3, input_shape, **options)


def test_unknown_or_bad_input_sizes_fail_naming_input_shape():
    with pytest.raises(ValueError, match="input_shape .* known channels"):
        tfseg.build_model("unet", 3, (None, None, None))
    with pytest.raises(ValueError, match="input_shape=.*positive int or None, got -4"):
        tfseg.build_model("unet", 3, (-4, 32, 3))


def test_other_channel_counts_build_without_the_caffe_preprocessing():
    model = tfseg.build_model("deeplab_v3", 3, (33, 33, 1), backbone="resnet50", include_preprocessing=False)
    assert model.predict(np.zeros((1, 33, 33, 1), "float32"), verbose=0).shape == (1, 33, 33, 3)
    model = tfseg.build_model("unet", 2, (None, None, 1), base_filters=4)  # "tf" scaling works per channel
    assert model.predict(np.zeros((1, 16, 16, 1), "float32"), verbose=0).shape == (1, 16, 16, 2)


MIXED_PRECISION_CASES = [
    ("unet", {"mode": "practical", "base_filters": 4}, (37, 51)),
    ("unet", {"mode": "paper", "base_filters": 4}, (188, 188)),
    ("fcn32s", {}, (37, 51)),
    ("deeplab_v1", {}, (37, 51)),
    ("deeplab_v3plus", {"backbone": "mobilenet_v2", "decoder": True}, (37, 51)),
]


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "name,options,size", MIXED_PRECISION_CASES,
    ids=[c[0] + "-" + "-".join(map(str, c[1].values())) for c in MIXED_PRECISION_CASES],
)
def test_logits_are_float32_under_mixed_precision(mixed_float16, name, options, size):
    model = tfseg.build_model(name, 3, **options)
    float16_layers = [layer for layer in model.layers if layer.compute_dtype == "float16" and layer.weights]
    assert float16_layers, "the body should compute in float16"
    assert model.output.dtype == "float32"
    image = np.random.default_rng(0).uniform(0, 255, (1, *size, 3)).astype("float32")
    logits = model(image, training=False)
    assert logits.dtype == "float32" and np.isfinite(keras.ops.convert_to_numpy(logits)).all()


# ---------------------------------------------------------------------------------------------
# ImageNet MobileNetV2 through build_model (Keras publishes no hash for its file)


@pytest.fixture
def mobilenet_cache(tmp_path, monkeypatch):
    """The cache holds a keras.applications MobileNetV2 file (random weights); the URL is unreachable."""
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(5)
    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    entry = W.IMAGENET_WEIGHTS["mobilenet_v2"]
    path = tmp_path / entry.file_name
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    monkeypatch.setitem(W.IMAGENET_WEIGHTS, "mobilenet_v2",
                        dataclasses.replace(entry, url="http://127.0.0.1:9/unreachable.h5"))
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(tmp_path))
    keras.backend.clear_session()
    return source, hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_backbone_weights_equal(model, source):
    backbone = model.get_layer("mobilenet_v2")
    for name in ("Conv1", "bn_Conv1", "block_2_depthwise", "block_16_project_BN"):
        for got, want in zip(backbone.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)


def test_imagenet_mobilenet_v2_needs_an_explicit_decision(mobilenet_cache):
    with pytest.raises(W.WeightsHashError, match="allow_unverified_weights=True"):
        tfseg.build_model("deeplab_v3plus", 3, backbone="mobilenet_v2", backbone_weights="imagenet")


def test_imagenet_mobilenet_v2_unverified_on_request(mobilenet_cache):
    source, sha256 = mobilenet_cache
    with pytest.warns(UserWarning, match=f"without hash verification .* sha256 is {sha256}"):
        model = tfseg.build_model("deeplab_v3plus", 3, backbone="mobilenet_v2", backbone_weights="imagenet",
                                  allow_unverified_weights=True)
    _assert_backbone_weights_equal(model, source)


def test_imagenet_mobilenet_v2_pinned_by_hash(mobilenet_cache):
    source, sha256 = mobilenet_cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = tfseg.build_model("deeplab_v3plus", 3, backbone="mobilenet_v2", backbone_weights="imagenet",
                                  backbone_weights_hash=sha256)
    _assert_backbone_weights_equal(model, source)
    with pytest.raises(W.WeightsUnavailableError, match="wrong sha256 hash"):
        tfseg.build_model("deeplab_v3plus", 3, backbone="mobilenet_v2", backbone_weights="imagenet",
                          backbone_weights_hash="0" * 64)


@pytest.mark.parametrize("option", [{"allow_unverified_weights": True}, {"backbone_weights_hash": "0" * 64}])
def test_weight_options_without_weights_are_refused(option):
    with pytest.raises(ValueError, match="only apply when weights are loaded"):
        tfseg.build_model("deeplab_v3plus", 3, backbone="mobilenet_v2", **option)


def test_unet_input_stride_runs_the_network_on_the_pooled_input_and_upsamples_its_logits():
    import tensorflow as tf

    strided = tfseg.build_model("unet", 5, base_filters=4, depth=2, input_stride=2)
    plain = tfseg.build_model("unet", 5, base_filters=4, depth=2)
    assert strided.count_params() == plain.count_params()
    strided.set_weights(plain.get_weights())
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 96, 3)).astype("float32")
    half = tf.nn.avg_pool2d(image, 2, 2, "VALID")
    expected = tf.image.resize(plain(half), (64, 96), "bilinear")
    np.testing.assert_allclose(strided(image), expected, atol=1e-5)
    assert strided(np.zeros((1, 97, 131, 3), "float32")).shape == (1, 97, 131, 5)
    # Sizes unknown until run time (multi-scale inference traces the model so).
    dynamic = tf.function(strided, input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    np.testing.assert_allclose(dynamic(tf.constant(image)), expected, atol=1e-5)
    with pytest.raises(ValueError, match="input_stride"):
        tfseg.build_model("unet", 5, (572, 572, 1), mode="paper", input_stride=2, include_preprocessing=False)


def test_freeze_backbone_freezes_a_unets_contracting_path():
    from tfseg.training.model_setup import configure_for_fine_tuning

    model = tfseg.build_model("unet", 3, base_filters=2, depth=1)
    configure_for_fine_tuning(model, freeze_backbone=True)
    frozen = sorted(layer.name for layer in model.layers if layer.weights and not layer.trainable)
    assert frozen == ["bottom_conv1", "bottom_conv1_bn", "bottom_conv2", "bottom_conv2_bn",
                      "down1_conv1", "down1_conv1_bn", "down1_conv2", "down1_conv2_bn"]
