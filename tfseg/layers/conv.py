"""Convolution building blocks shared by the backbones and heads."""

from __future__ import annotations

import keras


def fixed_padding(x, kernel_size, rate=1, name=None):
    """Pad as the official DeepLab/slim code does before a strided VALID convolution.

    The effective kernel ``k + (k-1)(rate-1)`` gets ``(k_eff-1)//2`` pixels before and the rest
    after, independently of the input size (plain 'SAME' would depend on the parity of the input).
    """
    k_eff = kernel_size + (kernel_size - 1) * (rate - 1)
    total = k_eff - 1
    before, after = total // 2, total - total // 2
    if total == 0:
        return x
    return keras.layers.ZeroPadding2D(((before, after), (before, after)), name=name)(x)


def conv2d_same(x, filters, kernel_size, stride=1, rate=1, use_bias=False, name=None, **kwargs):
    """slim's ``conv2d_same``: 'same' padding at stride 1, fixed padding + 'valid' when strided."""
    if stride == 1:
        return keras.layers.Conv2D(
            filters, kernel_size, padding="same", dilation_rate=rate, use_bias=use_bias, name=name, **kwargs
        )(x)
    x = fixed_padding(x, kernel_size, rate, name=None if name is None else f"{name}_pad")
    return keras.layers.Conv2D(
        filters, kernel_size, strides=stride, padding="valid", dilation_rate=rate, use_bias=use_bias,
        name=name, **kwargs,
    )(x)


def conv_bn_relu(x, filters, kernel_size, name, rate=1, bn_epsilon=1e-5, bn_momentum=0.9997, activation="relu"):
    """Conv (no bias) + batch norm + ReLU, the unit of the DeepLab v3 heads."""
    x = keras.layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=rate, use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.Activation(activation, name=f"{name}_relu")(x)
    return x


def separable_conv_bn_relu(x, filters, name, kernel_size=3, rate=1, bn_epsilon=1e-5, bn_momentum=0.9997):
    """Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU (DeepLab v3+ ASPP / decoder style)."""
    x = keras.layers.DepthwiseConv2D(
        kernel_size, padding="same", dilation_rate=rate, use_bias=False, name=f"{name}_depthwise"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_depthwise_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_depthwise_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pointwise")(x)
    x = keras.layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_pointwise_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_pointwise_relu")(x)
