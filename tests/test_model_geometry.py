"""Geometry pinned against the reference nets, not just shapes.

- FCN: crop offsets from an independent coordinate-mapping computation (Caffe's ``coord_map``
  rules applied to the reference voc-fcn nets), and the same computation applied to the layers
  of tfseg's Keras model.
- DeepLab: LargeFOV's pool5a and fc6 rate, ASPP rates and concatenation order, the v3+ decoder's
  48-channel projection, separable 256-channel convolutions and concatenation order.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import keras
import numpy as np
import pytest

import tfseg
from tfseg.models.fcn import FCN_CROP_OFFSETS

# ---------------------------------------------------------------------------------------------
# Coordinate maps (Caffe python/caffe/coord_map.py): a layer maps a bottom coordinate x to the
# top coordinate a * x + b; convolution and pooling (kernel k, stride s, pad p): a = 1/s,
# b = (p - (k - 1)/2) / s; deconvolution: a = s, b = (k - 1)/2 - p. A blob X cropped to match R
# takes the offset bX - bR, where (a, b) map the input image onto each blob and aX == aR.


def conv_map(kernel, stride=1, pad=0):
    return Fraction(1, stride), Fraction(2 * pad - (kernel - 1), 2 * stride)


def deconv_map(kernel, stride, pad=0):
    return Fraction(stride), Fraction(kernel - 1, 2) - pad


def compose(maps):
    a, b = Fraction(1), Fraction(0)
    for scale, shift in maps:
        a, b = scale * a, scale * b + shift
    return a, b


def crop_offset(cropped, reference):
    (a_x, b_x), (a_r, b_r) = compose(cropped), compose(reference)
    assert a_x == a_r, "scale mismatch on crop"
    offset = b_x - b_r
    assert offset >= 0 and offset.denominator == 1, offset
    return int(offset)


# The reference nets (fcn.berkeleyvision.org voc-fcn{32,16,8}s/net.py), written out layer by layer.
def _caffe_vgg_to(pool):
    layers = [conv_map(3, 1, 100), conv_map(3, 1, 1), conv_map(2, 2)]  # conv1_1 pad 100, conv1_2, pool1
    for block, convs in ((2, 2), (3, 3), (4, 3), (5, 3)):
        layers += [conv_map(3, 1, 1)] * convs + [conv_map(2, 2)]
        if f"pool{block}" == pool:
            return layers
    raise ValueError(pool)


CAFFE_SCORE_FR = _caffe_vgg_to("pool5") + [conv_map(7), conv_map(1), conv_map(1)]  # fc6, fc7, score_fr
CAFFE_UPSCORE2 = CAFFE_SCORE_FR + [deconv_map(4, 2)]
CAFFE_SCORE_POOL4 = _caffe_vgg_to("pool4") + [conv_map(1)]
CAFFE_UPSCORE_POOL4 = CAFFE_UPSCORE2 + [deconv_map(4, 2)]  # after fuse_pool4 (same geometry as upscore2)
CAFFE_SCORE_POOL3 = _caffe_vgg_to("pool3") + [conv_map(1)]
CAFFE_CROPS = {
    "fcn32s": {"upscore": crop_offset(CAFFE_SCORE_FR + [deconv_map(64, 32)], [])},
    "fcn16s": {
        "score_pool4": crop_offset(CAFFE_SCORE_POOL4, CAFFE_UPSCORE2),
        "upscore16": crop_offset(CAFFE_UPSCORE2 + [deconv_map(32, 16)], []),
    },
    "fcn8s": {
        "score_pool4": crop_offset(CAFFE_SCORE_POOL4, CAFFE_UPSCORE2),
        "score_pool3": crop_offset(CAFFE_SCORE_POOL3, CAFFE_UPSCORE_POOL4),
        "upscore8": crop_offset(CAFFE_UPSCORE_POOL4 + [deconv_map(16, 8)], []),
    },
}


def keras_layer_map(layer):
    """The coordinate map of a tfseg Keras layer, read from its configuration."""
    config = layer.get_config()
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, _), (left, _) = config["padding"]
        assert top == left
        return Fraction(1), Fraction(top)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        assert config["padding"] == "valid"
        return deconv_map(config["kernel_size"][0], config["strides"][0])
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D)):
        kernel = config.get("kernel_size", config.get("pool_size"))[0]
        stride = config["strides"][0]
        if config["padding"] == "valid":
            return conv_map(kernel, stride)
        # TF 'same' pads (k-1)//2 before at stride 1; with kernel == stride it pads only after.
        assert stride == 1 or kernel == stride, layer.name
        return conv_map(kernel, stride, (kernel - 1) // 2 if stride == 1 else 0)
    assert isinstance(layer, (keras.layers.Dropout, keras.layers.Activation, keras.layers.Rescaling)), layer.name
    return Fraction(1), Fraction(0)


def tfseg_path(model, names):
    """Coordinate maps along ``names`` (top-level layers; ``vgg16:<last>`` walks the backbone up to <last>)."""
    maps = []
    for name in names:
        if name.startswith("vgg16:"):
            backbone = model.get_layer("vgg16")
            for layer in backbone.layers[1:]:
                maps.append(keras_layer_map(layer))
                if layer.name == name.split(":")[1]:
                    break
        else:
            maps.append(keras_layer_map(model.get_layer(name)))
    return maps


@functools.lru_cache(maxsize=None)
def fcn(name, **options):
    return tfseg.build_model(name, 1, **options)


TRUNK = ["pad100", "vgg16:block5_pool", "fc6", "drop6", "fc7", "drop7", "score_fr"]


def tfseg_crops(name):
    model = fcn(name)
    crops = {layer.name: layer.offset for layer in model.layers if type(layer).__name__ == "CropLike"}
    if name == "fcn32s":
        derived = {"upscore": crop_offset(tfseg_path(model, TRUNK + ["upscore"]), [])}
        return derived, {"upscore": crops["score"]}
    upscore2 = tfseg_path(model, TRUNK + ["upscore2"])
    pool4 = tfseg_path(model, ["pad100", "vgg16:block4_pool", "score_pool4"])
    if name == "fcn16s":
        derived = {
            "score_pool4": crop_offset(pool4, upscore2),
            "upscore16": crop_offset(upscore2 + tfseg_path(model, ["upscore16"]), []),
        }
        return derived, {"score_pool4": crops["score_pool4c"], "upscore16": crops["score"]}
    upscore_pool4 = upscore2 + tfseg_path(model, ["upscore_pool4"])
    derived = {
        "score_pool4": crop_offset(pool4, upscore2),
        "score_pool3": crop_offset(tfseg_path(model, ["pad100", "vgg16:block3_pool", "score_pool3"]), upscore_pool4),
        "upscore8": crop_offset(upscore_pool4 + tfseg_path(model, ["upscore8"]), []),
    }
    return derived, {"score_pool4": crops["score_pool4c"], "score_pool3": crops["score_pool3c"], "upscore8": crops["score"]}


def test_caffe_coordinate_maps_give_the_reference_offsets():
    # The published prototxts' crop offsets (voc-fcn32s: 19; 16s: 5, 27; 8s: 5, 9, 31).
    assert CAFFE_CROPS == {
        "fcn32s": {"upscore": 19},
        "fcn16s": {"score_pool4": 5, "upscore16": 27},
        "fcn8s": {"score_pool4": 5, "score_pool3": 9, "upscore8": 31},
    }


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
def test_fcn_crops_align_by_the_coordinate_maps_of_its_own_layers(name):
    derived, used = tfseg_crops(name)
    assert derived == CAFFE_CROPS[name] == used == FCN_CROP_OFFSETS[name]


def test_fcn_upsampling_is_fixed_like_the_reference_nets_unless_asked():
    upsampling = ["upscore2", "upscore_pool4", "upscore8"]
    fixed, learned = fcn("fcn8s"), fcn("fcn8s", learnable_upsampling=True)
    for model, trainable in ((fixed, False), (learned, True)):
        for name in upsampling:
            layer = model.get_layer(name)
            assert layer.trainable is trainable, name
            assert any(w is layer.kernel for w in model.trainable_weights) is trainable, name
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            assert kernel.shape[0] == 2 * layer.strides[0]
            assert kernel.max() > 0  # bilinear either way
    assert not fcn("fcn32s").get_layer("upscore").trainable
    assert fcn("fcn32s", learnable_upsampling=True).get_layer("upscore").trainable


# ---------------------------------------------------------------------------------------------
# DeepLab


def _node_inputs(model, name):
    """Names of the layers feeding layer ``name`` (in call order)."""
    tensors = model.get_layer(name)._inbound_nodes[0].input_tensors
    return [t._keras_history.operation.name for t in tensors]


def _probe(model, names, image):
    outputs = keras.Model(model.input, [model.get_layer(n).output for n in names])(image)
    return [keras.ops.convert_to_numpy(o) for o in outputs]


def test_largefov_pool5a_and_fc6_follow_the_reference_prototxt():
    model = tfseg.build_model("deeplab_v1", 3)
    fc6 = model.get_layer("fc6")
    assert fc6.kernel.shape == (3, 3, 512, 1024) and fc6.dilation_rate == (12, 12)
    assert _node_inputs(model, "fc6") == ["pool5a"]
    pool5a = model.get_layer("pool5a")
    assert isinstance(pool5a, keras.layers.AveragePooling2D) and pool5a.pool_size == (3, 3) and pool5a.strides == (1, 1)
    # Caffe AVE pooling with pad 1: the zero padding counts in the mean (divide by 9 everywhere).
    image = np.random.default_rng(0).uniform(0, 255, (1, 65, 97, 3)).astype("float32")
    preprocessed = _probe(model, ["preprocessing", "pool5a"], image)
    pool5 = keras.ops.convert_to_numpy(model.get_layer("vgg16")(preprocessed[0])["P5"])
    padded = np.pad(pool5, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = sum(padded[:, i:i + pool5.shape[1], j:j + pool5.shape[2]] for i in range(3) for j in range(3)) / 9
    assert pool5.shape[1:3] == (9, 13) and np.abs(pool5[:, 0]).max() > 0
    np.testing.assert_allclose(preprocessed[1], expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("backbone,aspp,rates", [("vgg16", "S", (2, 4, 8, 12)), ("resnet50", "L", (6, 12, 18, 24))])
def test_deeplab_v2_aspp_rates(backbone, aspp, rates):
    model = tfseg.build_model("deeplab_v2", 3, backbone=backbone, aspp=aspp)
    names = [f"fc6_{i}" for i in range(1, 5)] if backbone == "vgg16" else [f"fc1_c{i}" for i in range(4)]
    assert tuple(model.get_layer(n).dilation_rate[0] for n in names) == rates
    assert all(model.get_layer(n).kernel.shape[:2] == (3, 3) for n in names)
    assert len(_node_inputs(model, "aspp_sum")) == 4  # class scores summed


ASPP_BRANCH_OUTPUTS = ["image_pooling_resize", "aspp0_relu"]


@pytest.mark.parametrize("output_stride,rates", [(16, (6, 12, 18)), (8, (12, 24, 36))])
def test_deeplab_v3_aspp_rates_and_concatenation_order(output_stride, rates):
    model = tfseg.build_model("deeplab_v3", 3, (65, 97, 3), backbone="resnet50", output_stride=output_stride)
    assert tuple(model.get_layer(f"aspp{i}").dilation_rate[0] for i in (1, 2, 3)) == rates
    assert model.get_layer("aspp1").kernel.shape == (3, 3, 2048, 256)
    assert model.get_layer("aspp0").kernel.shape == (1, 1, 2048, 256)
    assert model.get_layer("image_pooling").kernel.shape == (1, 1, 2048, 256)
    branches = ASPP_BRANCH_OUTPUTS + [f"aspp{i}_relu" for i in (1, 2, 3)]
    assert _node_inputs(model, "aspp_concat") == branches  # official order: image pooling, aspp0, aspp1..3
    assert model.get_layer("concat_projection").kernel.shape == (1, 1, 5 * 256, 256)
    image = np.random.default_rng(0).uniform(0, 255, (1, 65, 97, 3)).astype("float32")
    *parts, concat = _probe(model, branches + ["aspp_concat"], image)
    np.testing.assert_array_equal(concat, np.concatenate(parts, axis=-1))
    np.testing.assert_allclose(parts[0], np.broadcast_to(parts[0][:, :1, :1], parts[0].shape))  # pooled, broadcast


def test_deeplab_v3plus_separable_aspp_and_decoder_structure():
    model = tfseg.build_model("deeplab_v3plus", 3, (65, 97, 3), backbone="resnet50")
    assert tuple(model.get_layer(f"aspp{i}_depthwise").dilation_rate[0] for i in (1, 2, 3)) == (6, 12, 18)
    assert _node_inputs(model, "aspp_concat") == ASPP_BRANCH_OUTPUTS + [f"aspp{i}_pointwise_relu" for i in (1, 2, 3)]
    # Decoder: 1x1 projection of the stride-4 feature to 48 channels (+ BN + ReLU) ...
    assert model.get_layer("feature_projection0").kernel.shape == (1, 1, 256, 48)
    assert isinstance(model.get_layer("feature_projection0_bn"), keras.layers.BatchNormalization)
    # ... concatenated after the 4x-upsampled encoder output (official order) ...
    assert _node_inputs(model, "decoder_concat") == ["decoder_upsample", "feature_projection0_relu"]
    # ... then two separable 3x3 convolutions of 256 channels and the 1x1 classifier.
    assert model.get_layer("decoder_conv0_depthwise").kernel.shape == (3, 3, 304, 1)
    assert model.get_layer("decoder_conv0_pointwise").kernel.shape == (1, 1, 304, 256)
    assert model.get_layer("decoder_conv1_depthwise").kernel.shape == (3, 3, 256, 1)
    assert model.get_layer("decoder_conv1_pointwise").kernel.shape == (1, 1, 256, 256)
    assert _node_inputs(model, "logits") == ["decoder_conv1_pointwise_relu"]
    image = np.random.default_rng(1).uniform(0, 255, (1, 65, 97, 3)).astype("float32")
    upsampled, projected, concat, encoder = _probe(
        model, ["decoder_upsample", "feature_projection0_relu", "decoder_concat", "concat_projection_dropout"], image
    )
    assert encoder.shape == (1, 5, 7, 256) and upsampled.shape == (1, 17, 25, 256) and projected.shape == (1, 17, 25, 48)
    np.testing.assert_array_equal(concat, np.concatenate([upsampled, projected], axis=-1))
    # align_corners resize: the corners of the upsampled map are the encoder's corners.
    np.testing.assert_allclose(upsampled[0, [0, 0, -1, -1], [0, -1, 0, -1]], encoder[0, [0, 0, -1, -1], [0, -1, 0, -1]],
                               rtol=1e-5, atol=1e-6)
