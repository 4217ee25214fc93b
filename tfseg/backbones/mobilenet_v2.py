"""MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381) as a dict-of-endpoints backbone with atrous stages.

Layer names and weight shapes are exactly keras.applications' ``MobileNetV2(include_top=False)``
(``Conv1``, ``bn_Conv1``, ``expanded_conv_depthwise``, ``block_{i}_expand``/``_depthwise``/
``_project`` + ``_BN``, and with ``include_last_conv`` ``Conv_1``, ``Conv_1_bn``, ``out_relu``; BN
epsilon 1e-3, momentum 0.999; ReLU6), so its ImageNet weight files load by layer name (without the
last conv, the file's ``Conv_1`` tensors are declared unused in ``tfseg.backbones.weights``).

Padding: every stride-2 conv uses TensorFlow 'SAME' (pad ``(0, 1)`` on an even side, ``(1, 1)`` on
an odd one), which is what the official slim MobileNetV2 does (``mobilenet_base`` with
``use_explicit_padding=False``, as called by DeepLab's ``feature_extractor``) and what the keras
weights were trained with. keras.applications gets the same numbers with a ``ZeroPadding2D``
computed from the parity of the *static* shape (``correct_pad``); with an unknown (None) size it
assumes even and pads ``(0, 1)``, which is wrong on odd inputs, whereas 'SAME' is decided per input.
So outputs agree with keras at every fixed input size (checked at 224x224 and 97x131) and the
``*_pad`` layers (which hold no weights) do not exist here.

Depth: the official DeepLab feature extractor builds slim's MobileNetV2 up to ``layer_18``, the last
inverted residual (``block_16``, 320 channels at alpha 1), and so does this builder by default.
Keras' final 1x1 convolution to 1280 channels (``Conv_1``, slim ``layer_19``), which only serves
ImageNet classification, is added by ``include_last_conv=True``.

``output_stride`` 8/16/32 turns the strides beyond it into atrous rates on the depthwise convs
(slim ``mobilenet_base`` rule, see ``DilationSchedule``). Endpoints are the last feature at each
nominal stride: ``P1`` expanded_conv_project_BN, ``P2`` block_2_add, ``P3`` block_5_add, ``P4``
block_12_add, ``P5`` block_16_project_BN (``out_relu`` with the last conv); plus
``block_2_depthwise_relu`` (slim ``layer_4/depthwise_output``: the third inverted residual's
depthwise output after BN and ReLU6, stride 4, 144 channels at alpha 1), keyed by its layer name.
"""

from __future__ import annotations

import keras

from tfseg.backbones.common import DilationSchedule, backbone_model, check_output_stride

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.999

# (expansion t, output channels c, repeats n, first stride s): Sandler et al. 2018, Table 2.
INVERTED_RESIDUAL_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value, divisor=8, min_value=None):
    """Round a channel count to a multiple of ``divisor`` without losing more than 10% (keras/slim rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def batch_norm(name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def inverted_residual(x, expansion, filters, block_id, alpha, stride=1, rate=1):
    """keras.applications' ``_inverted_res_block`` with 'SAME' padding and a dilated depthwise conv.

    Returns ``(output, depthwise output after BN and ReLU6)``.
    """
    in_channels = x.shape[-1]
    out_channels = make_divisible(int(filters * alpha), 8)
    inputs = x
    if block_id:
        prefix = f"block_{block_id}_"
        x = keras.layers.Conv2D(expansion * in_channels, 1, use_bias=False, name=f"{prefix}expand")(x)
        x = batch_norm(f"{prefix}expand_BN")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    else:
        prefix = "expanded_conv_"
    x = keras.layers.DepthwiseConv2D(
        3, strides=stride, padding="same", dilation_rate=rate, use_bias=False, name=f"{prefix}depthwise"
    )(x)
    x = batch_norm(f"{prefix}depthwise_BN")(x)
    x = depthwise_output = keras.layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = keras.layers.Conv2D(out_channels, 1, use_bias=False, name=f"{prefix}project")(x)
    x = batch_norm(f"{prefix}project_BN")(x)
    if in_channels == out_channels and stride == 1:
        x = keras.layers.Add(name=f"{prefix}add")([inputs, x])
    return x, depthwise_output


# Extra endpoint: the stride-4 depthwise output (slim ``layer_4/depthwise_output``), by layer name.
LOW_LEVEL_ENDPOINT = "block_2_depthwise_relu"


def mobilenet_v2(input_shape=(None, None, 3), *, output_stride=32, alpha=1.0, include_last_conv=False,
                 name="mobilenet_v2"):
    """Build MobileNetV2 (width multiplier ``alpha``) up to ``layer_18``, or to ``Conv_1`` with ``include_last_conv``.

    Endpoints ``P1`` .. ``P5`` and ``block_2_depthwise_relu`` (see the module docstring).
    """
    check_output_stride(output_stride)
    if alpha <= 0:
        raise ValueError(f"alpha={alpha!r} must be positive")
    inputs = keras.Input(input_shape, name=f"{name}_input")
    schedule = DilationSchedule(output_stride)
    nominal_stride = 1
    endpoints = {}

    stride, rate = schedule.step(2)
    nominal_stride *= 2
    x = keras.layers.Conv2D(
        make_divisible(32 * alpha, 8), 3, strides=stride, padding="same", dilation_rate=rate, use_bias=False,
        name="Conv1",
    )(inputs)
    x = batch_norm("bn_Conv1")(x)
    x = keras.layers.ReLU(6.0, name="Conv1_relu")(x)

    block_id = 0
    for expansion, filters, repeats, first_stride in INVERTED_RESIDUAL_SETTINGS:
        for repeat in range(repeats):
            requested = first_stride if repeat == 0 else 1
            stride, rate = schedule.step(requested)
            nominal_stride *= requested
            x, depthwise_output = inverted_residual(x, expansion, filters, block_id, alpha, stride=stride, rate=rate)
            endpoints[f"P{nominal_stride.bit_length() - 1}"] = (x, schedule.current_stride)
            if f"block_{block_id}_depthwise_relu" == LOW_LEVEL_ENDPOINT:
                endpoints[LOW_LEVEL_ENDPOINT] = (depthwise_output, schedule.current_stride)
            block_id += 1

    if include_last_conv:
        last_channels = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
        x = keras.layers.Conv2D(last_channels, 1, use_bias=False, name="Conv_1")(x)
        x = batch_norm("Conv_1_bn")(x)
        x = keras.layers.ReLU(6.0, name="out_relu")(x)
        endpoints["P5"] = (x, schedule.current_stride)
    return backbone_model(inputs, endpoints, name)
