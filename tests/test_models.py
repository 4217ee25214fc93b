"""Model builders: FCN classifier equivalence, parameter counts, output shapes, serialisation."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfseg
from tfseg.backbones.vgg import classifier_as_convolutions, transplant_vgg16_classifier
from tfseg.models.unet import paper_output_size
from tfseg.registry import encoder_output_stride


def test_fcn_fc_layers_reproduce_the_vgg16_classifier():
    """fc6/fc7 (in the FCN) and fc8 made from VGG16's Dense weights give the classifier's logits at 224x224.

    A 1000-class FCN would carry a 64x64x1000x1000 upsampling kernel (16 GB), so fc8 is applied as
    the converted 1x1 kernel and the FCN's own score layer is checked on a 21-class slice of it.
    """
    reference = keras.applications.VGG16(include_top=True, weights=None, classifier_activation=None)
    fcn = tfseg.build_model("fcn32s", 21)
    fc1, fc2, predictions = (reference.get_layer(n).get_weights() for n in ("fc1", "fc2", "predictions"))
    transplant_vgg16_classifier(fcn, fc1, fc2)
    fcn.get_layer("score_fr").set_weights([predictions[0][:, :21].reshape(1, 1, 4096, 21), predictions[1][:21]])
    fc8_kernel, fc8_bias = classifier_as_convolutions(fc1, fc2, predictions)["fc8"]
    image = np.random.default_rng(0).uniform(-120, 120, (2, 224, 224, 3)).astype("float32")
    pool5 = keras.Model(reference.input, reference.get_layer("block5_pool").output)(image)
    assert pool5.shape == (2, 7, 7, 512)
    fc7 = fcn.get_layer("fc7")(fcn.get_layer("fc6")(pool5))
    assert fc7.shape == (2, 1, 1, 4096)
    scores = tf.nn.conv2d(fc7, fc8_kernel, 1, "VALID") + fc8_bias
    expected = reference(image)
    assert np.abs(expected).max() > 1e-2  # the check is not vacuous
    np.testing.assert_allclose(np.asarray(scores)[:, 0, 0], expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(fcn.get_layer("score_fr")(fc7))[:, 0, 0], expected[:, :21], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "name,options,input_channels,expected,tolerance",
    [
        ("fcn8s", {}, 3, 134.3e6, 0.005),
        ("unet", {"mode": "paper", "include_preprocessing": False}, 1, 31_030_658, 0),
        ("deeplab_v1", {}, 3, 20.5e6, 0.01),
        ("deeplab_v3plus", {"backbone": "xception65"}, 3, 41.26e6, 0.005),
        # Official DeepLab MobileNetV2 ends at layer_18 (320 channels); image pooling + 1x1, no decoder.
        ("deeplab_v3plus", {"backbone": "mobilenet_v2"}, 3, 2_146_645, 0),
    ],
)
def test_published_parameter_counts(name, options, input_channels, expected, tolerance):
    classes = 2 if name == "unet" else 21
    model = tfseg.build_model(name, classes, (None, None, input_channels), **options)
    count = model.count_params()
    if tolerance == 0:
        assert count == expected
    else:
        assert abs(count - expected) / expected <= tolerance, count


# Full-size models, 6-11 s each on the 2-core CPU: the deeper siblings of a family (ResNet-101,
# Xception-71) and FCN-32s/16s (their crops are checked in test_model_geometry) run with -m slow.
SHAPE_CASES = [
    pytest.param("fcn32s", {}, marks=pytest.mark.slow),
    pytest.param("fcn16s", {}, marks=pytest.mark.slow),
    ("fcn8s", {"at_once": True}),
    ("unet", {"mode": "practical", "base_filters": 8}),
    ("deeplab_v1", {}),
    ("deeplab_v2", {"backbone": "vgg16", "aspp": "S"}),
    pytest.param("deeplab_v2", {"backbone": "resnet101", "aspp": "L"}, marks=pytest.mark.slow),
    ("deeplab_v3", {"backbone": "resnet50", "output_stride": 8}),
    pytest.param("deeplab_v3", {"backbone": "resnet101"}, marks=pytest.mark.slow),
    ("deeplab_v3plus", {"backbone": "xception41", "output_stride": 8}),
    ("deeplab_v3plus", {"backbone": "xception65"}),
    pytest.param("deeplab_v3plus", {"backbone": "xception71", "output_stride": 32}, marks=pytest.mark.slow),
    ("deeplab_v3plus", {"backbone": "resnet50"}),
    ("deeplab_v3plus", {"backbone": "mobilenet_v2"}),
    ("deeplab_v3plus", {"backbone": "mobilenet_v2", "decoder": True, "atrous_rates": (6, 12, 18)}),
]


def _case_id(case):
    name, options = getattr(case, "values", case)
    return f"{name}-{'-'.join(map(str, options.values()))}"


@pytest.mark.parametrize("name,options", SHAPE_CASES, ids=[_case_id(case) for case in SHAPE_CASES])
def test_logits_have_the_input_size(name, options):
    model = tfseg.build_model(name, 5, **options)
    # 129 = 4 * 32 + 1 is DeepLab's crop size class (513 = 16 * 32 + 1) at a sixteenth of the work.
    for height, width in [(129, 129), (97, 131)]:
        image = np.random.default_rng(0).uniform(0, 255, (1, height, width, 3)).astype("float32")
        logits = model.predict(image, verbose=0)
        assert logits.shape == (1, height, width, 5)
        assert np.isfinite(logits).all()


# The official DECODER_END_POINTS[4] (research/deeplab/core/feature_extractor.py) per backbone,
# the tfseg layer it corresponds to, and its channels.
OFFICIAL_DECODER_FEATURES = {
    "resnet50": ("block1/unit_2/bottleneck_v1/conv3", "conv2_block2_3_bn", 256),
    "resnet101": ("block1/unit_2/bottleneck_v1/conv3", "conv2_block2_3_bn", 256),
    "xception41": ("entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise",
                   "entry_flow_block2_unit1_sepconv2_pointwise_bn", 256),
    "xception65": ("entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise",
                   "entry_flow_block2_unit1_sepconv2_pointwise_bn", 256),
    "xception71": ("entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise",
                   "entry_flow_block3_unit1_sepconv2_pointwise_bn", 256),
    "mobilenet_v2": ("layer_4/depthwise_output", "block_2_depthwise_relu", 144),
}


def test_decoder_feature_table_follows_the_official_end_points():
    from tfseg.models.deeplab import DECODER_FEATURES, V3_BACKBONES

    assert set(DECODER_FEATURES) == set(V3_BACKBONES)
    assert DECODER_FEATURES == {name: layer for name, (_, layer, _) in OFFICIAL_DECODER_FEATURES.items()}


# resnet101 and xception65 share their siblings' endpoint (checked above); built here at full width.
@pytest.mark.parametrize("backbone", ["resnet50", "xception41", "xception71", "mobilenet_v2"])
def test_v3plus_decoder_projects_the_official_low_level_feature(backbone):
    _, layer_name, channels = OFFICIAL_DECODER_FEATURES[backbone]
    model = tfseg.build_model("deeplab_v3plus", 3, (65, 97, 3), backbone=backbone, decoder=True)
    backbone_model = model.get_layer(backbone)
    assert {i.name: (i.stride, i.channels) for i in backbone_model.feature_info}[layer_name] == (4, channels)
    assert backbone_model.output[layer_name]._keras_history.operation.name == layer_name
    projection = model.get_layer("feature_projection0")
    assert projection.kernel.shape == (1, 1, channels, 48)
    image = np.random.default_rng(0).uniform(0, 255, (1, 65, 97, 3)).astype("float32")
    projected_input = keras.Model(model.input, projection.input)(image)
    preprocessed = keras.Model(model.input, model.get_layer("preprocessing").output)(image)
    expected = backbone_model(preprocessed)[layer_name]
    assert projected_input.shape == (1, 17, 25, channels)
    np.testing.assert_array_equal(np.asarray(projected_input), np.asarray(expected))


@pytest.mark.parametrize("size", [572, 513, 189])
def test_unet_paper_mode_valid_output_size(size):
    model = tfseg.build_model("unet", 2, (None, None, 1), mode="paper", base_filters=4)
    expected = paper_output_size(size)
    logits = model.predict(np.zeros((1, size, size + 16, 1), "float32"), verbose=0)
    assert logits.shape == (1, expected, paper_output_size(size + 16), 2)
    assert paper_output_size(572) == 388


def test_unet_paper_mode_rejects_too_small_inputs():
    with pytest.raises(ValueError, match="height 97 is too small"):
        tfseg.build_model("unet", 2, (97, 131, 1), mode="paper")


def test_encoder_output_strides():
    assert encoder_output_stride(tfseg.build_model("deeplab_v1", 3)) == 8
    assert encoder_output_stride(tfseg.build_model("deeplab_v3", 3, backbone="resnet50", output_stride=8)) == 8
    assert encoder_output_stride(tfseg.build_model("fcn32s", 3)) == 32


ROUNDTRIP_CASES = [
    pytest.param("fcn8s", {}, marks=pytest.mark.slow),  # a 537 MB .keras file (fc6 is 7x7x512x4096)
    ("unet", {"base_filters": 8}),
    ("deeplab_v2", {"backbone": "vgg16"}),
    # a ResNet model is still saved and reloaded by test_saving (v2, ResNet-50)
    pytest.param("deeplab_v3", {"backbone": "resnet50"}, marks=pytest.mark.slow),
    ("deeplab_v3plus", {"backbone": "xception41"}),
    ("deeplab_v3plus", {"backbone": "mobilenet_v2"}),
]


@pytest.mark.parametrize("name,options", ROUNDTRIP_CASES, ids=[_case_id(case) for case in ROUNDTRIP_CASES])
def test_keras_file_roundtrip_gives_identical_outputs(tmp_path, name, options):
    model = tfseg.build_model(name, 4, **options)
    rng = np.random.default_rng(0)
    for layer in model.layers + [sub for layer in model.layers if isinstance(layer, keras.Model) for sub in layer.layers]:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), beta, rng.normal(0, 0.1, mean.shape), var])
    for layer in model.layers:  # FCN's zero-initialised scores would make the check vacuous
        if layer.name.startswith("score_") and layer.weights:
            layer.set_weights([rng.normal(0, 0.01, w.shape) for w in layer.get_weights()])
    image = rng.uniform(0, 255, (1, 67, 93, 3)).astype("float32")
    before = model.predict(image, verbose=0)
    assert np.abs(before).max() > 0
    path = tmp_path / f"{name}.keras"
    model.save(path)
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(image, verbose=0), before)


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid names: deconvnet, deeplab_v1, .*unet"):
        tfseg.build_model("pspnet", 21)
    with pytest.raises(TypeError, match="valid options: .*output_stride"):
        tfseg.build_model("deeplab_v3", 21, outputstride=8)
    with pytest.raises(ValueError, match=r"aspp='M' .*\['S', 'L'\]"):
        tfseg.build_model("deeplab_v2", 21, aspp="M")
    with pytest.raises(ValueError, match="mode='paperish'"):
        tfseg.build_model("unet", 2, mode="paperish")
    with pytest.raises(ValueError, match="num_classes"):
        tfseg.build_model("unet", 0)
    assert tfseg.list_models() == sorted(
        ["fcn32s", "fcn16s", "fcn8s", "unet", "deeplab_v1", "deeplab_v2", "deeplab_v3", "deeplab_v3plus",
         "segnet", "segnet_basic", "deconvnet"]
    )


@pytest.mark.slow  # builds every listed configuration at full size (FCN's 134 M parameters included)
def test_cli_models_prints_the_table():
    result = subprocess.run(
        [sys.executable, "-m", "tfseg.cli", "models"], capture_output=True, text=True, timeout=900, check=True
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert lines[0] == "| model | options | parameters | output stride |"
    rows = {(cells[0], cells[1]): cells[2:] for cells in (line.strip("| ").split(" | ") for line in lines[1:])}
    assert rows[("unet", "mode=paper")][0] != ""
    assert rows[("deeplab_v1", "-")] == ["20,505,429", "8"]
    assert rows[("deeplab_v3plus", "backbone=xception65")][1] == "16"
    assert rows[("deeplab_v3plus", "backbone=mobilenet_v2")] == ["2,146,645", "16"]
    assert len(rows) == len(tfseg.registry.MODEL_VARIANTS)
    # The README's table is this command's output.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    readme_lines = readme.splitlines()
    assert lines[0] in readme_lines, "README has no table of `tfseg models`"
    start = readme_lines.index(lines[0])
    readme_rows = [line for line in readme_lines[start:] if line.startswith("| ")][:len(lines)]
    assert readme_rows == lines


def _prefill_vgg16_cache(tmp_path, monkeypatch, keys):
    """Legacy HDF5 files written from keras.applications VGG16 (random weights) in an offline cache.

    The table's hashes are pointed at them and its URLs at an unreachable port: the download path
    is not taken. Returns the reference model (with its classifier).
    """
    import dataclasses
    import hashlib

    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from tfseg.backbones import weights as W

    reference = keras.applications.VGG16(include_top=True, weights=None)
    models = {"vgg16": keras.Model(reference.input, reference.get_layer("block5_pool").output), "vgg16_top": reference}
    for key in keys:
        path = tmp_path / W.IMAGENET_WEIGHTS[key].file_name
        with h5py.File(path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, models[key])
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        monkeypatch.setitem(W.IMAGENET_WEIGHTS, key, dataclasses.replace(W.IMAGENET_WEIGHTS[key], file_hash=md5,
                                                                          url="http://127.0.0.1:9/unreachable.h5"))
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(tmp_path))
    return reference


def _assert_vgg16_trunk(model, reference):
    backbone = model.get_layer("vgg16")
    for name in ("block1_conv1", "block5_conv3"):
        for got, want in zip(backbone.get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)


def test_pretrained_vgg_trunk_loads_from_the_cache(tmp_path, monkeypatch):
    """backbone_weights="imagenet" through build_model, offline (the classifier file, 528 MB, in -m slow)."""
    reference = _prefill_vgg16_cache(tmp_path, monkeypatch, ["vgg16"])
    _assert_vgg16_trunk(tfseg.build_model("deeplab_v1", 21, backbone_weights="imagenet"), reference)
    with pytest.raises(ValueError, match="VGG16 backbone only"):
        tfseg.build_model("deeplab_v2", 21, backbone="resnet50", classifier_weights="imagenet")


@pytest.mark.slow  # writes and hashes VGG16's 528 MB classifier file: about 40 s on the 2-core CPU
def test_pretrained_vgg_models_load_trunk_and_classifier_from_the_cache(tmp_path, monkeypatch):
    """backbone_weights="imagenet" and classifier_weights="imagenet" through build_model, offline."""
    reference = _prefill_vgg16_cache(tmp_path, monkeypatch, ["vgg16", "vgg16_top"])
    model = tfseg.build_model("deeplab_v1", 21, backbone_weights="imagenet", classifier_weights="imagenet")
    _assert_vgg16_trunk(model, reference)
    fc1, fc2 = (reference.get_layer(n).get_weights() for n in ("fc1", "fc2"))
    kernel6, bias6 = model.get_layer("fc6").get_weights()
    np.testing.assert_array_equal(kernel6, fc1[0].reshape(7, 7, 512, 4096)[::3, ::3, :, ::4])
    np.testing.assert_array_equal(bias6, fc1[1][::4])
    np.testing.assert_array_equal(model.get_layer("fc7").get_weights()[0][0, 0], fc2[0][::4, ::4])

    fcn = tfseg.build_model("fcn8s", 21, classifier_weights="imagenet")
    np.testing.assert_array_equal(fcn.get_layer("fc6").get_weights()[0], fc1[0].reshape(7, 7, 512, 4096))
