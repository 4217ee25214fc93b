"""SegNet and SegNet-Basic (Badrinarayanan, Kendall & Cipolla, TPAMI 2017, arXiv 1511.00561).

Encoder-decoders that upsample with the encoder's max-pooling switches (max unpooling), faithful
to the reference Caffe nets (SegNet-Tutorial ``segnet_train.prototxt`` and
``segnet_basic_train.prototxt``): 2x2 stride-2 pooling in Caffe's ceil mode, so odd sizes come
back exactly (360x480 -> ... -> 23x30 -> 12x15 and back), batch norm after every convolution.

- ``segnet``: VGG16's 13 convolutions, each with BN and ReLU, and a mirrored decoder of unpooling
  and 3x3 convolutions with BN and ReLU; the last one (``logits``) scores the classes.
  ``backbone_weights="imagenet"`` loads VGG16's convolutions (keras.applications names).
- ``segnet_basic``: 4 encoders and 4 decoders of 64 7x7 convolutions with BN, ReLU in the
  encoder only, no biases (the paper, section 4.1), and a 1x1 classifier. The reference net's
  local contrast normalisation (an LRN layer) is replaced by the model's input scaling.

The encoders are nested models (``vgg16_bn``, ``segnet_basic_encoder``) whose endpoints are the
pooled maps ``P1``.. and the switches ``P1_mask``.. (see :mod:`tfseg.layers.unpooling`).
"""

from __future__ import annotations

import keras

from tfseg.backbones.common import backbone_model
from tfseg.backbones.vgg import VGG16_BLOCKS
from tfseg.layers.preprocessing import ImagePreprocessing
from tfseg.layers.unpooling import MaxPoolingWithMask2D, MaxUnpooling2D

# SegNet's decoder: for each encoder block, deepest first, the output channels of its convolutions
# (Caffe conv5_3_D, conv5_2_D, conv5_1_D, ...); the last convolution of block 1 is the classifier.
SEGNET_DECODER = ((5, (512, 512, 512)), (4, (512, 512, 256)), (3, (256, 256, 128)), (2, (128, 64)), (1, (64,)))
SEGNET_BASIC_DEPTH = 4
SEGNET_BASIC_FILTERS = 64
SEGNET_BASIC_KERNEL = 7


def conv_bn(x, filters, kernel_size, name, use_bias=True, relu=True):
    """Convolution ('same', He initialisation as Caffe's msra filler) + batch norm (+ ReLU)."""
    x = keras.layers.Conv2D(
        filters, kernel_size, padding="same", use_bias=use_bias, kernel_initializer="he_normal", name=name
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def check_input_shape(model_name, input_shape):
    if input_shape[-1] is None:
        raise ValueError(f"{model_name}: input_shape {tuple(input_shape)} needs a known channel count")


def vgg16_bn_encoder(input_shape=(None, None, 3), name="vgg16_bn"):
    """VGG16's convolutions with BN + ReLU and 2x2 max pooling that keeps its switches.

    Layer names are keras.applications VGG16's (``block1_conv1``..``block5_conv3``, with ``_bn`` and
    ``_relu`` beside them), so the ImageNet convolutions load by name. Endpoints: ``P{b}`` (after
    pool b, stride 2**b) and ``P{b}_mask`` (pool b's switches, at its input's stride 2**(b-1)).
    """
    inputs = keras.Input(input_shape, name=f"{name}_input")
    x = inputs
    endpoints = {}
    for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, convs + 1):
            x = conv_bn(x, filters, 3, f"block{block}_conv{conv}")
        x, mask = MaxPoolingWithMask2D(2, name=f"block{block}_pool")(x)
        endpoints[f"P{block}_mask"] = (mask, 2 ** (block - 1))
        endpoints[f"P{block}"] = (x, 2**block)
    return backbone_model(inputs, endpoints, name)


def load_vgg16_convolutions(encoder, source="imagenet"):
    """Load VGG16's 13 ImageNet convolutions into ``encoder`` by name (BN layers keep their initial values)."""
    from tfseg.backbones.weights import WeightsMismatchError, load_imagenet_weights

    loaded = load_imagenet_weights(encoder, source, backbone="vgg16", require_all=False)
    expected = {f"block{b}_conv{c}" for b, (_, convs) in enumerate(VGG16_BLOCKS, start=1) for c in range(1, convs + 1)}
    if set(loaded) != expected:
        raise WeightsMismatchError(
            f"{source}: expected VGG16's 13 convolutions, the file holds {sorted(loaded)}; "
            f"missing {sorted(expected - set(loaded))}"
        )


def preprocessed_input(input_shape, mode, include_preprocessing):
    inputs = keras.Input(input_shape, name="image")
    x = ImagePreprocessing(mode, name="preprocessing")(inputs) if include_preprocessing else inputs
    return inputs, x


def segnet(num_classes, input_shape=(None, None, 3), *, backbone_weights=None, include_preprocessing=True):
    """SegNet: VGG16-BN encoder, decoder of unpooling and 3x3 conv + BN + ReLU, logits at the input's size.

    ``backbone_weights``: None, ``"imagenet"`` or a keras.applications VGG16 HDF5 file.
    """
    check_input_shape("segnet", input_shape)
    inputs, x = preprocessed_input(input_shape, "caffe", include_preprocessing)
    encoder = vgg16_bn_encoder(x.shape[1:])
    if backbone_weights is not None:
        load_vgg16_convolutions(encoder, backbone_weights)
    features = encoder(x)
    x = features["P5"]
    for block, filters in SEGNET_DECODER:
        x = MaxUnpooling2D(2, name=f"decoder{block}_unpool")([x, features[f"P{block}_mask"]])
        convs = len(filters) + (block == 1)  # block 1's conv1 is the classifier
        for conv, channels in zip(range(convs, 0, -1), filters):
            x = conv_bn(x, channels, 3, f"decoder{block}_conv{conv}")
    logits = keras.layers.Conv2D(num_classes, 3, padding="same", kernel_initializer="he_normal", name="logits")(x)
    return keras.Model(inputs, logits, name="segnet")


def segnet_basic_encoder(input_shape=(None, None, 3), name="segnet_basic_encoder"):
    """SegNet-Basic's encoder: 4 x (64 7x7 conv without bias, BN, ReLU, 2x2 pooling with switches)."""
    inputs = keras.Input(input_shape, name=f"{name}_input")
    x = inputs
    endpoints = {}
    for level in range(1, SEGNET_BASIC_DEPTH + 1):
        x = conv_bn(x, SEGNET_BASIC_FILTERS, SEGNET_BASIC_KERNEL, f"conv{level}", use_bias=False)
        x, mask = MaxPoolingWithMask2D(2, name=f"pool{level}")(x)
        endpoints[f"P{level}_mask"] = (mask, 2 ** (level - 1))
        endpoints[f"P{level}"] = (x, 2**level)
    return backbone_model(inputs, endpoints, name)


def segnet_basic(num_classes, input_shape=(None, None, 3), *, include_preprocessing=True):
    """SegNet-Basic: 4 encoders, 4 decoders (unpooling, 64 7x7 conv + BN, no ReLU), 1x1 classifier.

    Trained from scratch; input pixels are scaled to [-1, 1] in place of the reference's LRN.
    """
    check_input_shape("segnet_basic", input_shape)
    inputs, x = preprocessed_input(input_shape, "tf", include_preprocessing)
    features = segnet_basic_encoder(x.shape[1:])(x)
    x = features[f"P{SEGNET_BASIC_DEPTH}"]
    for level in range(SEGNET_BASIC_DEPTH, 0, -1):
        x = MaxUnpooling2D(2, name=f"decoder{level}_unpool")([x, features[f"P{level}_mask"]])
        x = conv_bn(x, SEGNET_BASIC_FILTERS, SEGNET_BASIC_KERNEL, f"decoder{level}_conv", use_bias=False, relu=False)
    logits = keras.layers.Conv2D(num_classes, 1, kernel_initializer="he_normal", name="logits")(x)
    return keras.Model(inputs, logits, name="segnet_basic")
