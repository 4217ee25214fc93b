"""DeepLab v1 (LargeFOV), v2 (ASPP), v3 and v3+ as functions over a backbone's endpoints.

- v1: Chen et al., ICLR 2015 (arXiv 1412.7062), DeepLab-LargeFOV (the reference train.prototxt).
- v2: Chen et al., TPAMI 2017 (arXiv 1606.00915), ASPP with summed branch scores.
- v3: Chen et al. 2017 (arXiv 1706.05587), ASPP with image pooling, concatenated.
- v3+: Chen et al., ECCV 2018 (arXiv 1802.02611), v3 encoder + low-level decoder.

Every model resizes its logits bilinearly to the input's size at run time, so any input size works;
the logits are float32 under a mixed-precision policy (keras-hub's convention).
"""

from __future__ import annotations

import keras

from tfseg.backbones import backbone_spec, build_backbone, check_output_stride, weight_options
from tfseg.backbones.vgg import load_vgg16_classifier
from tfseg.layers.conv import conv_bn_relu, separable_conv_bn_relu
from tfseg.layers.preprocessing import ImagePreprocessing
from tfseg.layers.spatial import ResizeLike

ASPP_V2_RATES = {"S": (2, 4, 8, 12), "L": (6, 12, 18, 24)}
LARGEFOV_FC6_RATE = 12
V3_RATES_AT_OS16 = (6, 12, 18)
V3_BACKBONES = ("resnet50", "resnet101", "xception41", "xception65", "xception71", "mobilenet_v2")
# Backbone-specific v3+ defaults, as in the official model zoo: MobileNetV2 runs with image
# pooling + 1x1 only and no decoder (75.32 mIoU on VOC val); the others with full ASPP + decoder.
V3PLUS_DEFAULTS = {
    "mobilenet_v2": {"atrous_rates": (), "decoder": False},
}
# DeepLab v3 (section 4.1) uses multi-grid (1, 2, 4) in ResNet's block4; Xception none by default.
V3_MULTI_GRID_DEFAULTS = {"resnet50": (1, 2, 4), "resnet101": (1, 2, 4)}
# The v3+ decoder's low-level feature per backbone: the stride-4 entry of the official
# DECODER_END_POINTS (research/deeplab/core/feature_extractor.py), as the backbone endpoint key.
DECODER_FEATURES = {
    "resnet50": "conv2_block2_3_bn",  # resnet_v1_50: block1/unit_2/bottleneck_v1/conv3
    "resnet101": "conv2_block2_3_bn",  # resnet_v1_101: block1/unit_2/bottleneck_v1/conv3
    # xception_41/65: entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise
    "xception41": "entry_flow_block2_unit1_sepconv2_pointwise_bn",
    "xception65": "entry_flow_block2_unit1_sepconv2_pointwise_bn",
    "xception71": "entry_flow_block3_unit1_sepconv2_pointwise_bn",  # entry_flow/block3/unit_1/...
    "mobilenet_v2": "block_2_depthwise_relu",  # layer_4/depthwise_output
}
ASPP_CHANNELS = 256
DECODER_PROJECTION_CHANNELS = 48
HEAD_BN_EPSILON = 1e-5


def _check_choice(argument, value, valid):
    if value not in valid:
        raise ValueError(f"{argument}={value!r} is not supported; valid: {list(valid)}")


def _inputs_and_backbone(input_shape, backbone, output_stride, include_preprocessing, weights, **options):
    """Image input, preprocessing and the backbone's endpoints; ``weights`` are ``build_backbone``'s weight options."""
    inputs = keras.Input(input_shape, name="image")
    mode = backbone_spec(backbone).preprocessing
    x = ImagePreprocessing(mode, name="preprocessing")(inputs) if include_preprocessing else inputs
    model = build_backbone(backbone, x.shape[1:], output_stride=output_stride, **weights, **options)
    return inputs, model(x)


def _vgg_fc_branch(x, num_classes, rate, dropout, suffix):
    """DeepLab's VGG classifier head: fc6 (3x3 atrous, 1024) -> fc7 (1x1, 1024) -> fc8 (scores)."""
    x = keras.layers.Conv2D(1024, 3, padding="same", dilation_rate=rate, activation="relu", name=f"fc6{suffix}")(x)
    x = keras.layers.Dropout(dropout, name=f"drop6{suffix}")(x)
    x = keras.layers.Conv2D(1024, 1, activation="relu", name=f"fc7{suffix}")(x)
    x = keras.layers.Dropout(dropout, name=f"drop7{suffix}")(x)
    return keras.layers.Conv2D(
        num_classes, 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name=f"fc8{suffix}"
    )(x)


def _upsample_to_input(logits, inputs, align_corners):
    return ResizeLike(align_corners=align_corners, dtype="float32", name="upsample_logits")([logits, inputs])


def deeplab_v1(num_classes, input_shape=(None, None, 3), *, backbone="vgg16", backbone_weights=None,
               backbone_weights_hash=None, allow_unverified_weights=False, classifier_weights=None,
               include_preprocessing=True, dropout=0.5, align_corners=True):
    """DeepLab-LargeFOV: VGG16 at output stride 8, pool5a, fc6 3x3 with rate 12 and 1024 channels.

    As the reference prototxt: pool5 (3x3 max, stride 1) is followed by ``pool5a``, a 3x3 stride-1
    average pooling whose zero padding counts in the mean (Caffe's AVE pooling with pad 1).
    ``classifier_weights`` ("imagenet" or a VGG16 HDF5 file with its classifier) initialises fc6/fc7
    from the decimated ImageNet classifier, as the paper does.
    """
    _check_choice("backbone", backbone, ("vgg16",))
    weights = weight_options(backbone_weights, backbone_weights_hash, allow_unverified_weights)
    inputs, features = _inputs_and_backbone(input_shape, backbone, 8, include_preprocessing, weights, pooling="deeplab")
    x = keras.layers.ZeroPadding2D(1, name="pool5a_pad")(features["P5"])
    x = keras.layers.AveragePooling2D(3, strides=1, padding="valid", name="pool5a")(x)
    logits = _vgg_fc_branch(x, num_classes, rate=LARGEFOV_FC6_RATE, dropout=dropout, suffix="")
    model = keras.Model(inputs, _upsample_to_input(logits, inputs, align_corners), name="deeplab_v1_largefov")
    if classifier_weights is not None:
        load_vgg16_classifier(model, classifier_weights)
    return model


def deeplab_v2(num_classes, input_shape=(None, None, 3), *, backbone="resnet101", aspp="L", backbone_weights=None,
               backbone_weights_hash=None, allow_unverified_weights=False, classifier_weights=None,
               include_preprocessing=True, dropout=0.5, align_corners=True):
    """DeepLab v2: parallel atrous branches whose class scores are summed (ASPP-S or ASPP-L).

    VGG16: each branch is fc6 (3x3 at rate r, 1024) -> fc7 (1x1, 1024) -> fc8. ResNet-101: each
    branch is a single 3x3 atrous convolution to the classes on conv5 (the reference prototxt).
    ``classifier_weights`` (VGG16 only) initialises every branch's fc6/fc7 from the ImageNet classifier.
    """
    _check_choice("backbone", backbone, ("vgg16", "resnet50", "resnet101"))
    _check_choice("aspp", aspp, tuple(ASPP_V2_RATES))
    if classifier_weights is not None and backbone != "vgg16":
        raise ValueError(f"classifier_weights applies to the VGG16 backbone only, not backbone={backbone!r}")
    rates = ASPP_V2_RATES[aspp]
    options = {"pooling": "deeplab"} if backbone == "vgg16" else {}
    weights = weight_options(backbone_weights, backbone_weights_hash, allow_unverified_weights)
    inputs, features = _inputs_and_backbone(input_shape, backbone, 8, include_preprocessing, weights, **options)
    if backbone == "vgg16":
        branches = [
            _vgg_fc_branch(features["P5"], num_classes, rate, dropout, suffix=f"_{i + 1}") for i, rate in enumerate(rates)
        ]
    else:
        branches = [
            keras.layers.Conv2D(
                num_classes, 3, padding="same", dilation_rate=rate,
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name=f"fc1_c{i}",
            )(features["P5"])
            for i, rate in enumerate(rates)
        ]
    logits = keras.layers.Add(name="aspp_sum")(branches)
    model_name = f"deeplab_v2_{backbone}_aspp_{aspp.lower()}"
    model = keras.Model(inputs, _upsample_to_input(logits, inputs, align_corners), name=model_name)
    if classifier_weights is not None:
        load_vgg16_classifier(model, classifier_weights)
    return model


def aspp_v3(x, atrous_rates, separable, align_corners, dropout):
    """ASPP of DeepLab v3: image pooling, 1x1, and 3x3 atrous branches, concatenated and projected.

    Order of concatenation follows the official code: image pooling, aspp0, aspp1..n.
    """
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="image_pooling_gap")(x)
    pooled = conv_bn_relu(pooled, ASPP_CHANNELS, 1, "image_pooling", bn_epsilon=HEAD_BN_EPSILON)
    branches = [ResizeLike(align_corners=align_corners, name="image_pooling_resize")([pooled, x])]
    branches.append(conv_bn_relu(x, ASPP_CHANNELS, 1, "aspp0", bn_epsilon=HEAD_BN_EPSILON))
    for i, rate in enumerate(atrous_rates, start=1):
        if separable:
            branches.append(separable_conv_bn_relu(x, ASPP_CHANNELS, f"aspp{i}", rate=rate, bn_epsilon=HEAD_BN_EPSILON))
        else:
            branches.append(conv_bn_relu(x, ASPP_CHANNELS, 3, f"aspp{i}", rate=rate, bn_epsilon=HEAD_BN_EPSILON))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    x = conv_bn_relu(x, ASPP_CHANNELS, 1, "concat_projection", bn_epsilon=HEAD_BN_EPSILON)
    return keras.layers.Dropout(dropout, name="concat_projection_dropout")(x)


def _default_rates(output_stride):
    return tuple(r * 16 // output_stride for r in V3_RATES_AT_OS16)


def _v3_backbone_options(backbone, multi_grid):
    """ResNet's last stage and Xception's last exit-flow unit take multi-grid rates; MobileNetV2 none."""
    if backbone.startswith(("resnet", "xception")):
        return {"multi_grid": None if multi_grid is None else tuple(multi_grid)}
    if multi_grid is not None:
        raise ValueError(f"multi_grid applies to ResNet and Xception backbones, not backbone={backbone!r}")
    return {}


def deeplab_v3(num_classes, input_shape=(None, None, 3), *, backbone="resnet101", output_stride=16,
               multi_grid=None, atrous_rates=None, backbone_weights=None, backbone_weights_hash=None,
               allow_unverified_weights=False, include_preprocessing=True, dropout=0.1, align_corners=True):
    """DeepLab v3: atrous backbone (multi-grid for ResNet) + ASPP with image pooling + 1x1 logits.

    ``multi_grid`` defaults per backbone (``V3_MULTI_GRID_DEFAULTS``: (1, 2, 4) for ResNet, none for
    Xception); an explicit value is always used. ``atrous_rates`` default to (6, 12, 18) at output
    stride 16 and (12, 24, 36) at 8.
    """
    _check_choice("backbone", backbone, V3_BACKBONES)
    check_output_stride(output_stride)
    if multi_grid is None:
        multi_grid = V3_MULTI_GRID_DEFAULTS.get(backbone)
    rates = _default_rates(output_stride) if atrous_rates is None else tuple(atrous_rates)
    weights = weight_options(backbone_weights, backbone_weights_hash, allow_unverified_weights)
    inputs, features = _inputs_and_backbone(
        input_shape, backbone, output_stride, include_preprocessing, weights,
        **_v3_backbone_options(backbone, multi_grid),
    )
    x = aspp_v3(features["P5"], rates, separable=False, align_corners=align_corners, dropout=dropout)
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(inputs, _upsample_to_input(logits, inputs, align_corners), name=f"deeplab_v3_{backbone}")


def decoder_v3plus(encoder, low_level, align_corners, separable):
    """DeepLab v3+ decoder: 48-channel projection of stride-4 features, concat, two 3x3 convs of 256.

    Concatenation order as the official ``refine_by_decoder``: upsampled encoder output, then the projection.
    """
    projected = conv_bn_relu(low_level, DECODER_PROJECTION_CHANNELS, 1, "feature_projection0", bn_epsilon=HEAD_BN_EPSILON)
    upsampled = ResizeLike(align_corners=align_corners, name="decoder_upsample")([encoder, low_level])
    x = keras.layers.Concatenate(name="decoder_concat")([upsampled, projected])
    for i in (0, 1):
        if separable:
            x = separable_conv_bn_relu(x, ASPP_CHANNELS, f"decoder_conv{i}", bn_epsilon=HEAD_BN_EPSILON)
        else:
            x = conv_bn_relu(x, ASPP_CHANNELS, 3, f"decoder_conv{i}", bn_epsilon=HEAD_BN_EPSILON)
    return x


def deeplab_v3plus(num_classes, input_shape=(None, None, 3), *, backbone="xception65", output_stride=16,
                   atrous_rates=None, decoder=None, separable=True, multi_grid=None, backbone_weights=None,
                   backbone_weights_hash=None, allow_unverified_weights=False, include_preprocessing=True,
                   dropout=0.1, align_corners=True):
    """DeepLab v3+: the v3 encoder (separable ASPP) and a decoder on the stride-4 feature the official code uses.

    The decoder's low-level feature is ``DECODER_FEATURES[backbone]``. ``atrous_rates``/``decoder``
    default per backbone (``V3PLUS_DEFAULTS``): MobileNetV2 uses image pooling + 1x1 only and no
    decoder, as in the official model zoo. ``multi_grid`` (ResNet, Xception) defaults to none.
    """
    _check_choice("backbone", backbone, V3_BACKBONES)
    check_output_stride(output_stride)
    defaults = V3PLUS_DEFAULTS.get(backbone, {})
    if atrous_rates is None:
        atrous_rates = defaults.get("atrous_rates", _default_rates(output_stride))
    if decoder is None:
        decoder = defaults.get("decoder", True)
    weights = weight_options(backbone_weights, backbone_weights_hash, allow_unverified_weights)
    inputs, features = _inputs_and_backbone(
        input_shape, backbone, output_stride, include_preprocessing, weights,
        **_v3_backbone_options(backbone, multi_grid),
    )
    x = aspp_v3(features["P5"], tuple(atrous_rates), separable=separable, align_corners=align_corners, dropout=dropout)
    if decoder:
        x = decoder_v3plus(x, features[DECODER_FEATURES[backbone]], align_corners, separable)
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(inputs, _upsample_to_input(logits, inputs, align_corners), name=f"deeplab_v3plus_{backbone}")
