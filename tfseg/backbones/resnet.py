"""ResNet v1 (He et al. 2016, arXiv 1512.03385) as a dict-of-endpoints backbone with atrous stages.

Layer names and layout are keras.applications' ResNet50/101 (stride on the first 1x1 conv of a
stage, biases on every conv, BN epsilon 1.001e-5), so the ImageNet weight files load by exact
name. ``output_stride`` 8/16 keeps conv4/conv5 at stride 1 and dilates their 3x3 convs; every unit
of a de-strided stage runs at that stage's rate, as in the official DeepLab ResNet (where the
stride sits at the end of the previous block). ``multi_grid`` (DeepLab v3, Chen et al. 2017,
arXiv 1706.05587) multiplies the rates of the last stage's units, e.g. (1, 2, 4).

Endpoints: ``P1`` conv1 .. ``P5`` conv5 outputs, plus ``conv2_block2_3_bn``, the second unit's
residual branch before the addition (the official DeepLab ``block1/unit_2/bottleneck_v1/conv3``,
stride 4, 256 channels; slim strides at the end of its block1, so its unit_2 is keras' conv2_block2),
keyed by its layer name.
"""

from __future__ import annotations

import keras

from tfseg.backbones.common import DilationSchedule, backbone_model, check_output_stride

RESNET_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
STAGE_FILTERS = (64, 128, 256, 512)
BN_EPSILON = 1.001e-5
LOW_LEVEL_ENDPOINT = "conv2_block2_3_bn"


def bottleneck(x, filters, name, stride=1, rate=1, conv_shortcut=False):
    """keras.applications' ``block1``: 1x1 (strided) -> 3x3 (dilated) -> 1x1 x4, plus shortcut.

    Returns ``(output, residual branch before the addition)``.
    """
    if conv_shortcut:
        shortcut = keras.layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = keras.layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", dilation_rate=rate, name=f"{name}_2_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_2_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = keras.layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    residual = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_3_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return keras.layers.Activation("relu", name=f"{name}_out")(x), residual


def resnet_v1(depth, input_shape=(None, None, 3), *, output_stride=32, multi_grid=None, name=None):
    """Build ResNet-50/101 v1; endpoints ``P1`` (conv1) .. ``P5`` (conv5) and ``conv2_block2_3_bn``."""
    key = f"resnet{depth}"
    if key not in RESNET_DEPTHS:
        raise ValueError(f"ResNet depth {depth!r}; valid: {[int(k[6:]) for k in RESNET_DEPTHS]}")
    check_output_stride(output_stride)
    blocks_per_stage = RESNET_DEPTHS[key]
    if multi_grid is not None and len(multi_grid) != blocks_per_stage[-1]:
        raise ValueError(
            f"multi_grid={tuple(multi_grid)} needs {blocks_per_stage[-1]} entries, one per unit of the last stage"
        )
    name = name or key
    inputs = keras.Input(input_shape, name=f"{name}_input")
    schedule = DilationSchedule(output_stride)

    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(64, 7, strides=schedule.step(2)[0], name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    endpoints = {"P1": (x, schedule.current_stride)}
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=schedule.step(2)[0], name="pool1_pool")(x)

    for stage, (filters, units) in enumerate(zip(STAGE_FILTERS, blocks_per_stage), start=2):
        stride = 1 if stage == 2 else schedule.step(2)[0]
        grid = multi_grid if (stage == 5 and multi_grid is not None) else (1,) * units
        for unit in range(units):
            unit_name = f"conv{stage}_block{unit + 1}"
            x, residual = bottleneck(
                x,
                filters,
                name=unit_name,
                stride=stride if unit == 0 else 1,
                rate=schedule.rate * grid[unit],
                conv_shortcut=unit == 0,
            )
            if f"{unit_name}_3_bn" == LOW_LEVEL_ENDPOINT:
                endpoints[LOW_LEVEL_ENDPOINT] = (residual, schedule.current_stride)
        endpoints[f"P{stage}"] = (x, schedule.current_stride)
    return backbone_model(inputs, endpoints, name)


def resnet50(input_shape=(None, None, 3), *, output_stride=32, multi_grid=None, name="resnet50"):
    """ResNet-50 v1 (keras.applications layout)."""
    return resnet_v1(50, input_shape, output_stride=output_stride, multi_grid=multi_grid, name=name)


def resnet101(input_shape=(None, None, 3), *, output_stride=32, multi_grid=None, name="resnet101"):
    """ResNet-101 v1 (keras.applications layout)."""
    return resnet_v1(101, input_shape, output_stride=output_stride, multi_grid=multi_grid, name=name)
