"""VGG16 and ResNet backbones against keras.applications, and their recorded strides."""

import math

import keras
import numpy as np
import pytest

from tfseg.backbones import build_backbone, feature_strides


def copy_weights_by_name(source, target):
    """Copy every weighted layer of ``source`` into the same-named layer of ``target``."""
    target_layers = {layer.name: layer for layer in target.layers}
    copied = 0
    for layer in source.layers:
        if layer.weights:
            target_layers[layer.name].set_weights(layer.get_weights())
            copied += 1
    return copied


def randomise_batch_norm(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape),
            ])


def test_vgg16_matches_keras_applications():
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 96, 3))
    ours = build_backbone("vgg16", (64, 96, 3), output_stride=32, pooling="fcn")
    assert ours.count_params() == reference.count_params() == 14_714_688
    assert copy_weights_by_name(reference, ours) == 13
    x = np.random.default_rng(0).uniform(-100, 100, (2, 64, 96, 3)).astype("float32")
    np.testing.assert_allclose(ours(x)["P5"], reference(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("depth,params", [(50, 23_587_712),
                                          pytest.param(101, 42_658_176, marks=pytest.mark.slow)])  # 50 covers the code
def test_resnet_matches_keras_applications(depth, params):
    factory = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101}[depth]
    reference = factory(include_top=False, weights=None, input_shape=(64, 64, 3))
    ours = build_backbone(f"resnet{depth}", (64, 64, 3), output_stride=32)
    assert ours.count_params() == reference.count_params() == params
    if depth == 101:
        return  # structure checked; numerical equivalence on the 50-layer net is enough
    randomise_batch_norm(reference, np.random.default_rng(1))
    copy_weights_by_name(reference, ours)
    x = np.random.default_rng(0).uniform(-100, 100, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(ours(x)["P5"], reference(x), rtol=1e-3, atol=1e-3)


EXPECTED_STRIDES = {
    32: {"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 32},
    16: {"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 16},
    8: {"P1": 2, "P2": 4, "P3": 8, "P4": 8, "P5": 8},
}


# ResNet also exposes the official DeepLab stride-4 feature block1/unit_2/bottleneck_v1/conv3.
EXTRA_STRIDES = {"vgg16": {}, "resnet50": {"conv2_block2_3_bn": 4}}


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_endpoint_strides(name, output_stride):
    model = build_backbone(name, (None, None, 3), output_stride=output_stride)
    assert feature_strides(model) == {**EXPECTED_STRIDES[output_stride], **EXTRA_STRIDES[name]}
    for height, width in [(97, 131), (64, 64)]:
        features = model(np.zeros((1, height, width, 3), "float32"))
        for info in model.feature_info:
            assert features[info.name].shape[1:] == (
                math.ceil(height / info.stride), math.ceil(width / info.stride), info.channels
            ), (name, output_stride, info)


def test_resnet_stride4_feature_is_unit2_residual_branch_before_the_add():
    """Official DeepLab decoder feature block1/unit_2/bottleneck_v1/conv3: conv + BN, no add, no ReLU.

    slim's ResNet v1 strides at the end of block1 (unit_3), keras' at the start of conv3_block1, so
    both have the same second unit: keras' conv2_block2. Checked against a tap on keras.applications.
    """
    rng = np.random.default_rng(2)
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(65, 97, 3))
    randomise_batch_norm(reference, rng)
    ours = build_backbone("resnet50", (65, 97, 3), output_stride=16)
    copy_weights_by_name(reference, ours)
    key = "conv2_block2_3_bn"
    assert {info.name: (info.stride, info.channels) for info in ours.feature_info}[key] == (4, 256)
    assert ours.output[key]._keras_history.operation.name == key
    tap = keras.Model(reference.input, reference.get_layer(key).output)
    x = rng.uniform(-100, 100, (1, 65, 97, 3)).astype("float32")
    want = np.asarray(tap(x))
    assert want.shape == (1, 17, 25, 256) and (want < 0).any()  # before the ReLU
    np.testing.assert_allclose(np.asarray(ours(x)[key]), want, rtol=1e-4, atol=1e-3)


def test_resnet_multi_grid_rates():
    model = build_backbone("resnet101", output_stride=16, multi_grid=(1, 2, 4))
    rates = [model.get_layer(f"conv5_block{u}_2_conv").dilation_rate for u in (1, 2, 3)]
    assert rates == [(2, 2), (4, 4), (8, 8)]
    assert all(model.get_layer(f"conv4_block{u}_2_conv").dilation_rate == (1, 1) for u in (1, 23))
    model = build_backbone("resnet50", output_stride=8)
    assert model.get_layer("conv4_block1_2_conv").dilation_rate == (2, 2)
    assert model.get_layer("conv5_block3_2_conv").dilation_rate == (4, 4)
    assert model.get_layer("conv4_block1_1_conv").strides == (1, 1)


def test_vgg_deeplab_pooling_dilates_conv5():
    model = build_backbone("vgg16", output_stride=8, pooling="deeplab")
    assert model.get_layer("block5_conv1").dilation_rate == (2, 2)
    assert model.get_layer("block4_pool").strides == (1, 1)
    assert model.get_layer("block3_pool").pool_size == (3, 3)


def test_bad_backbone_arguments_name_the_valid_values():
    with pytest.raises(ValueError, match="valid backbones: .*resnet101"):
        build_backbone("resnet18")
    with pytest.raises(ValueError, match=r"output_stride=4 .*\[8, 16, 32\]"):
        build_backbone("vgg16", output_stride=4)
    with pytest.raises(ValueError, match="multi_grid"):
        build_backbone("resnet50", multi_grid=(1, 2))
