"""Aligned Xception-41/65/71 and MobileNetV2 backbones: strides, shapes, parameter counts, names, keras parity."""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
import pytest

from tfseg.backbones.common import feature_strides
from tfseg.backbones.mobilenet_v2 import mobilenet_v2
from tfseg.backbones.xception import xception41, xception65, xception71

BUILDERS = {
    "xception41": xception41,
    "xception65": xception65,
    "xception71": xception71,
    "mobilenet_v2": mobilenet_v2,
}

# Real strides after dilation: the nominal stride 2**k capped at output_stride.
EXPECTED_STRIDES = {
    output_stride: {f"P{k}": min(2**k, output_stride) for k in range(1, 6)} for output_stride in (8, 16, 32)
}
EXPECTED_CHANNELS = {
    "xception41": {"P1": 64, "P2": 256, "P3": 256, "P4": 728, "P5": 2048},
    "xception65": {"P1": 64, "P2": 256, "P3": 256, "P4": 728, "P5": 2048},
    # Xception-71's last stride-8 block output is entry_flow_block4 (728 channels).
    "xception71": {"P1": 64, "P2": 256, "P3": 728, "P4": 728, "P5": 2048},
    # DeepLab's MobileNetV2 ends at layer_18 (block_16, 320 channels), not at keras' 1280-channel Conv_1.
    "mobilenet_v2": {"P1": 16, "P2": 24, "P3": 32, "P4": 96, "P5": 320},
}
# The official DeepLab stride-4 feature (feature_extractor.py DECODER_END_POINTS[4]), keyed by the
# tfseg layer it is the output of: (official name, stride, channels).
OFFICIAL_STRIDE4_FEATURES = {
    "xception41": ("entry_flow_block2_unit1_sepconv2_pointwise_bn", 4, 256),
    "xception65": ("entry_flow_block2_unit1_sepconv2_pointwise_bn", 4, 256),
    "xception71": ("entry_flow_block3_unit1_sepconv2_pointwise_bn", 4, 256),
    "mobilenet_v2": ("block_2_depthwise_relu", 4, 144),
}

# Parameter counts (weights + BN gamma/beta/moving statistics, no biases), derived by hand.
# A separable conv cin -> cout: 9*cin depthwise + 4*cin BN + cin*cout pointwise + 4*cout BN.
# Root: 3*3*3*32 + 4*32 + 3*3*32*64 + 4*64 = 19,680.
# Entry flow (65): block1 64->128 = 9,536 + 2*18,560 + shortcut 64*128+512 = 55,360;
#   block2 128->256 = 35,456 + 2*69,888 + 33,792 = 209,024;
#   block3 256->728 = 192,608 + 2*542,360 + 189,280 = 1,466,608.
# Middle unit 728->728 x3 = 3*542,360 = 1,627,080 (x16 = 26,033,280).
# Exit block1 = 542,360 + 759,032 + 1,065,984 + shortcut 728*1024+4096 = 3,116,944;
# exit block2 (no shortcut) = 1,592,320 + 2,385,408 + 3,173,888 = 7,151,616.
# Xception-65 = 19,680 + 55,360 + 209,024 + 1,466,608 + 26,033,280 + 3,116,944 + 7,151,616
#             = 38,052,512.
# Cross-check with the full DeepLab v3+ Xception-65, 21 classes (bonlime port: 41,258,213):
# its head is image pooling 2048*256+1024 = 525,312, aspp0 525,312, aspp1..3 3*(9*2048+4*2048
# + 2048*256+1024) = 1,655,808, concat projection 1280*256+1024 = 328,704, feature projection
# 256*48+192 = 12,480, decoder_conv0 (304->256) 82,800, decoder_conv1 (256->256) 69,888, logits
# 256*21+21 = 5,397; total 3,205,701, and 41,258,213 - 3,205,701 = 38,052,512.
# Xception-41 = 65 - 8 middle units = 38,052,512 - 13,016,640 = 25,035,872.
# Xception-71 = 65 + entry block3 256->256 (3*69,888 + 66,560 = 276,224) + the extra 728->728
#   conv-shortcut block5 (1,627,080 + 728*728+2,912 = 2,159,976) = 40,488,712.
XCEPTION_PARAMS = {"xception41": 25_035_872, "xception65": 38_052_512, "xception71": 40_488_712}


@functools.lru_cache(maxsize=None)
def built(family, output_stride):
    return BUILDERS[family](output_stride=output_stride)


def _forward(model, height, width, seed=0):
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, (1, height, width, 3)).astype("float32")
    return {key: np.asarray(value) for key, value in model(x, training=False).items()}


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("family", list(BUILDERS))
def test_endpoint_sizes_match_recorded_strides(family, output_stride):
    model = built(family, output_stride)
    extra, extra_stride, extra_channels = OFFICIAL_STRIDE4_FEATURES[family]
    assert feature_strides(model) == {**EXPECTED_STRIDES[output_stride], extra: extra_stride}
    assert {info.name: info.channels for info in model.feature_info} == {
        **EXPECTED_CHANNELS[family], extra: extra_channels
    }
    for height, width in [(97, 131), (128, 128)]:
        outputs = _forward(model, height, width)
        assert set(outputs) == {"P1", "P2", "P3", "P4", "P5", extra}
        for info in model.feature_info:
            expected = (1, math.ceil(height / info.stride), math.ceil(width / info.stride), info.channels)
            assert outputs[info.name].shape == expected, (family, output_stride, info, (height, width))
            assert np.all(np.isfinite(outputs[info.name]))


@pytest.mark.parametrize("family", list(BUILDERS))
def test_official_stride4_feature_is_keyed_by_the_layer_it_comes_from(family):
    key = OFFICIAL_STRIDE4_FEATURES[family][0]
    model = built(family, 16)
    assert model.output[key]._keras_history.operation.name == key
    assert model.get_layer(key).name == key


def test_xception65_symbolic_shapes_at_513():
    model = built("xception65", 16)
    outputs = model(keras.KerasTensor((1, 513, 513, 3)))
    assert {key: tuple(value.shape[1:3]) for key, value in outputs.items()} == {
        "P1": (257, 257), "P2": (129, 129), "P3": (65, 65), "P4": (33, 33), "P5": (33, 33),
        "entry_flow_block2_unit1_sepconv2_pointwise_bn": (129, 129),
    }


def test_xception_parameter_counts():
    for family, expected in XCEPTION_PARAMS.items():
        assert built(family, 16).count_params() == expected, family
    # output_stride only changes strides and rates, never weights.
    assert built("xception65", 8).count_params() == XCEPTION_PARAMS["xception65"]


def _layer_config(model, name):
    return model.get_layer(name).get_config()


def test_xception_dilation_follows_output_stride():
    os16, os8 = built("xception65", 16), built("xception65", 8)
    # OS16: the exit flow's stride-2 unit runs at stride 1 (rate 1); the last unit at rate 2.
    assert tuple(_layer_config(os16, "entry_flow_block3_unit1_sepconv3_depthwise")["strides"]) == (2, 2)
    assert tuple(_layer_config(os16, "exit_flow_block1_unit1_sepconv3_depthwise")["strides"]) == (1, 1)
    assert tuple(_layer_config(os16, "exit_flow_block1_unit1_shortcut")["strides"]) == (1, 1)
    assert tuple(_layer_config(os16, "exit_flow_block1_unit1_sepconv1_depthwise")["dilation_rate"]) == (1, 1)
    assert tuple(_layer_config(os16, "exit_flow_block2_unit1_sepconv2_depthwise")["dilation_rate"]) == (2, 2)
    # OS8: entry block3 de-strided, middle flow at rate 2, exit flow at rate 2 then 4.
    assert tuple(_layer_config(os8, "entry_flow_block3_unit1_sepconv3_depthwise")["strides"]) == (1, 1)
    assert tuple(_layer_config(os8, "entry_flow_block3_unit1_sepconv3_depthwise")["dilation_rate"]) == (1, 1)
    assert tuple(_layer_config(os8, "middle_flow_block1_unit7_sepconv2_depthwise")["dilation_rate"]) == (2, 2)
    assert tuple(_layer_config(os8, "exit_flow_block1_unit1_sepconv3_depthwise")["dilation_rate"]) == (2, 2)
    assert tuple(_layer_config(os8, "exit_flow_block2_unit1_sepconv1_depthwise")["dilation_rate"]) == (4, 4)


def test_xception_multi_grid_scales_last_unit_rates():
    model = xception41(output_stride=16, multi_grid=(1, 2, 4))
    rates = [
        tuple(_layer_config(model, f"exit_flow_block2_unit1_sepconv{i}_depthwise")["dilation_rate"]) for i in (1, 2, 3)
    ]
    assert rates == [(2, 2), (4, 4), (8, 8)]
    with pytest.raises(ValueError):
        xception41(multi_grid=(1, 2))


def test_xception_layer_names_follow_official_checkpoint():
    model = built("xception65", 16)
    names = {layer.name for layer in model.layers}
    for name in [
        "entry_flow_conv1_1",
        "entry_flow_conv1_1_bn",
        "entry_flow_conv1_2",
        "entry_flow_block1_unit1_sepconv1_depthwise",
        "entry_flow_block1_unit1_sepconv1_depthwise_bn",
        "entry_flow_block1_unit1_sepconv1_pointwise",
        "entry_flow_block1_unit1_sepconv1_pointwise_bn",
        "entry_flow_block1_unit1_shortcut",
        "entry_flow_block1_unit1_shortcut_bn",
        "middle_flow_block1_unit1_sepconv1_depthwise",
        "middle_flow_block1_unit16_sepconv3_pointwise_bn",
        "exit_flow_block1_unit1_shortcut",
        "exit_flow_block2_unit1_sepconv3_pointwise_bn",
        "exit_flow_block2_unit1_sepconv1_depthwise_relu",
        "exit_flow_block2_unit1_sepconv3_pointwise_relu",
    ]:
        assert name in names, name
    for absent in [
        "middle_flow_block1_unit17_sepconv1_depthwise",
        "middle_flow_block1_unit1_shortcut",
        "exit_flow_block2_unit1_shortcut",
        "exit_flow_block2_unit1_sepconv1_relu",  # no pre-activation in the last unit
    ]:
        assert absent not in names, absent
    assert model.get_layer("entry_flow_block1_unit1_sepconv1_depthwise").kernel.shape == (3, 3, 64, 1)
    assert model.get_layer("exit_flow_block2_unit1_sepconv3_pointwise").kernel.shape == (1, 1, 1536, 2048)
    # The decoder feature is the BN output of entry flow block2's second separable conv (pre-ReLU).
    assert model.output["P2"]._keras_history.operation.name == "entry_flow_block2_unit1_sepconv2_pointwise_bn"


def _weight_signature(model):
    return {(layer.name, tuple(tuple(w.shape) for w in layer.weights)) for layer in model.layers if layer.weights}


@pytest.mark.parametrize("alpha", [1.0, 0.35])
def test_mobilenet_v2_matches_keras_applications(alpha):
    reference = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=alpha, input_shape=(224, 224, 3))
    with_last_conv = mobilenet_v2((224, 224, 3), output_stride=32, alpha=alpha, include_last_conv=True)
    assert with_last_conv.count_params() == reference.count_params()
    assert _weight_signature(with_last_conv) == _weight_signature(reference)
    # The default (DeepLab's layer_18) is keras' model without Conv_1 / Conv_1_bn and nothing else.
    ours = mobilenet_v2((224, 224, 3), output_stride=32, alpha=alpha)
    last_conv = {sig for sig in _weight_signature(reference) if sig[0] in ("Conv_1", "Conv_1_bn")}
    assert len(last_conv) == 2
    assert _weight_signature(ours) == _weight_signature(reference) - last_conv


def _randomize_batch_norm(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0.0, 0.1, beta.shape).astype("float32"),
                rng.normal(0.0, 0.1, mean.shape).astype("float32"),
                rng.uniform(0.5, 1.5, variance.shape).astype("float32"),
            ])


@pytest.mark.parametrize("alpha", [1.0, 0.35])
def test_mobilenet_v2_keras_weights_reproduce_keras_outputs(alpha):
    # keras pads stride-2 convs by the parity of the static size (correct_pad), which equals our
    # TF 'SAME' at every fixed size: even sides (224) pad (0, 1), odd sides (97, 131) pad (1, 1).
    ours = mobilenet_v2(output_stride=32, alpha=alpha, include_last_conv=True)  # (None, None, 3): SAME per input
    endpoint_layers = {
        "P1": "expanded_conv_project_BN", "P2": "block_2_add", "P3": "block_5_add", "P4": "block_12_add",
        "P5": "out_relu", "block_2_depthwise_relu": "block_2_depthwise_relu",
    }
    reference = None
    for height, width in [(224, 224), (97, 131)]:
        keras_model = keras.applications.MobileNetV2(
            include_top=False, weights=None, alpha=alpha, input_shape=(height, width, 3)
        )
        if reference is None:
            _randomize_batch_norm(keras_model)
            reference = keras_model
            for layer in reference.layers:
                if layer.weights:
                    ours.get_layer(layer.name).set_weights(layer.get_weights())
        else:
            keras_model.set_weights(reference.get_weights())
        taps = keras.Model(keras_model.input, {k: keras_model.get_layer(v).output for k, v in endpoint_layers.items()})
        x = np.random.default_rng(1).uniform(-1.0, 1.0, (1, height, width, 3)).astype("float32")
        expected = {key: np.asarray(value) for key, value in taps(x, training=False).items()}
        actual = {key: np.asarray(value) for key, value in ours(x, training=False).items()}
        for key in endpoint_layers:
            assert actual[key].shape == expected[key].shape, key
            assert np.abs(expected[key]).max() > 1e-2, key  # not a degenerate all-zero comparison
            np.testing.assert_allclose(actual[key], expected[key], rtol=1e-4, atol=1e-4, err_msg=f"{key} {height}x{width}")


def test_mobilenet_v2_dilation_follows_output_stride():
    model = built("mobilenet_v2", 8)
    assert tuple(_layer_config(model, "block_3_depthwise")["strides"]) == (2, 2)
    assert tuple(_layer_config(model, "block_6_depthwise")["strides"]) == (1, 1)
    assert tuple(_layer_config(model, "block_6_depthwise")["dilation_rate"]) == (1, 1)
    assert tuple(_layer_config(model, "block_7_depthwise")["dilation_rate"]) == (2, 2)
    assert tuple(_layer_config(model, "block_13_depthwise")["strides"]) == (1, 1)
    assert tuple(_layer_config(model, "block_13_depthwise")["dilation_rate"]) == (2, 2)
    assert tuple(_layer_config(model, "block_16_depthwise")["dilation_rate"]) == (4, 4)
    names = {layer.name for layer in model.layers}
    assert {"Conv1", "bn_Conv1", "expanded_conv_depthwise", "block_16_project_BN"} <= names
    assert not {"Conv_1", "Conv_1_bn", "out_relu"} & names


def test_mobilenet_v2_ends_at_layer_18_unless_the_last_conv_is_asked_for():
    """Official DeepLab: mobilenet_base(final_endpoint='layer_18'), the last inverted residual."""
    model = built("mobilenet_v2", 16)
    assert model.output["P5"]._keras_history.operation.name == "block_16_project_BN"
    assert model.layers[-1].name == "block_16_project_BN"
    top = mobilenet_v2(output_stride=16, include_last_conv=True)
    assert top.output["P5"]._keras_history.operation.name == "out_relu"
    assert top.get_layer("Conv_1").kernel.shape == (1, 1, 320, 1280)
    # Conv_1 (320*1280) and Conv_1_bn (4*1280) are all the difference.
    assert top.count_params() - model.count_params() == 320 * 1280 + 4 * 1280


def test_mobilenet_v2_stride4_feature_is_the_third_blocks_depthwise_output():
    """slim layer_4/depthwise_output: expanded_conv_2's depthwise conv after BN and ReLU6."""
    model = built("mobilenet_v2", 8)
    tap = model.output["block_2_depthwise_relu"]._keras_history.operation
    assert tap.name == "block_2_depthwise_relu" and isinstance(tap, keras.layers.ReLU) and tap.max_value == 6.0
    assert model.get_layer("block_2_depthwise").kernel.shape == (3, 3, 144, 1)
    out = model(np.random.default_rng(0).uniform(-1, 1, (1, 65, 97, 3)).astype("float32"), training=False)
    assert out["block_2_depthwise_relu"].shape == (1, 17, 25, 144)
    assert float(keras.ops.max(out["block_2_depthwise_relu"])) <= 6.0


def test_mobilenet_v2_alpha_channels():
    model = mobilenet_v2(alpha=0.35)
    assert {info.name: info.channels for info in model.feature_info} == {
        "P1": 8, "P2": 8, "block_2_depthwise_relu": 48, "P3": 16, "P4": 32, "P5": 112,
    }
    assert mobilenet_v2(alpha=0.35, include_last_conv=True).feature_info[-1].channels == 1280
    assert mobilenet_v2(alpha=1.4, include_last_conv=True).feature_info[-1].channels == 1792


def test_invalid_output_stride_is_rejected():
    with pytest.raises(ValueError):
        xception65(output_stride=4)
    with pytest.raises(ValueError):
        mobilenet_v2(output_stride=64)
