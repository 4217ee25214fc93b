"""VGG16 (Simonyan & Zisserman 2015, arXiv 1409.1556) as a dict-of-endpoints backbone.

Layer names are keras.applications.VGG16's (``block1_conv1`` ... ``block5_conv3``), so the
ImageNet weight file loads by exact name. Two pooling styles:

- ``pooling="fcn"``: 2x2 stride-2 max pooling as in the ImageNet model and FCN (Caffe's ceil
  mode, i.e. 'same' padding);
- ``pooling="deeplab"``: 3x3 stride-2 max pooling with padding 1, as in DeepLab v1/v2.

With ``output_stride`` 8 or 16, the pools that would exceed it run at stride 1 (3x3, padding 1)
and the following convolutions are dilated (DeepLab's atrous algorithm).
"""

from __future__ import annotations

import re

import keras
import numpy as np

from tfseg.backbones.common import DilationSchedule, backbone_model, check_output_stride

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
POOLING_STYLES = ("fcn", "deeplab")


def vgg16(input_shape=(None, None, 3), *, output_stride=32, pooling="fcn", name="vgg16"):
    """VGG16 convolutional trunk; endpoints ``P1``..``P5`` are the outputs of pool1..pool5."""
    check_output_stride(output_stride)
    if pooling not in POOLING_STYLES:
        raise ValueError(f"pooling={pooling!r}; valid: {list(POOLING_STYLES)}")
    inputs = keras.Input(input_shape, name=f"{name}_input")
    schedule = DilationSchedule(output_stride)
    rate = 1
    x = inputs
    endpoints = {}
    for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, convs + 1):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", dilation_rate=rate, activation="relu", name=f"block{block}_conv{conv}"
            )(x)
        stride, _ = schedule.step(2)
        if stride == 1:
            x = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"block{block}_pool")(x)
        elif pooling == "fcn":
            x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{block}_pool")(x)
        else:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
        rate = schedule.rate
        endpoints[f"P{block}"] = (x, schedule.current_stride)
    return backbone_model(inputs, endpoints, name)


def classifier_as_convolutions(fc1, fc2, predictions=None):
    """Reshape VGG16's ImageNet classifier (Dense fc1, fc2, predictions) into fc6/fc7/fc8 convolutions.

    Each argument is ``(kernel, bias)`` of the Dense layer. fc1's kernel (25088 x 4096) is laid out
    over the flattened 7x7x512 pool5 map (row-major H, W, C), so it reshapes to a 7x7x512x4096 HWIO
    kernel (Long et al. 2015, section 3.1). Returns ``{"fc6": ..., "fc7": ..., "fc8": ...}``.
    """
    (k1, b1), (k2, b2) = fc1, fc2
    if k1.shape[0] != 7 * 7 * 512:
        raise ValueError(f"fc1 kernel has shape {k1.shape}; expected (25088, units) from a 7x7x512 pool5")
    converted = {
        "fc6": (np.reshape(k1, (7, 7, 512, k1.shape[1])), b1),
        "fc7": (np.reshape(k2, (1, 1) + k2.shape), b2),
    }
    if predictions is not None:
        k3, b3 = predictions
        converted["fc8"] = (np.reshape(k3, (1, 1) + k3.shape), b3)
    return converted


def subsample_fc6(kernel, bias, spatial=3, channels=1024):
    """DeepLab-LargeFOV's fc6 from the 7x7x512x4096 one: decimate space to ``spatial`` and channels.

    Chen et al. 2015 (arXiv 1412.7062), section 4.1: the 7x7 kernel is subsampled to 3x3 (taking
    every third tap) and the 4096 output channels to 1024 (every fourth), then used with rate 12.
    fc7's input channels must be decimated the same way (see :func:`subsample_fc7`).
    """
    taps = np.linspace(0, kernel.shape[0] - 1, spatial).round().astype(int)
    step = kernel.shape[3] // channels
    return kernel[taps][:, taps][:, :, :, ::step], bias[::step]


def subsample_fc7(kernel, bias, channels=1024):
    """fc7 (1x1x4096x4096) decimated to 1x1x1024x1024 to match :func:`subsample_fc6`."""
    step_in = kernel.shape[2] // channels
    step_out = kernel.shape[3] // channels
    return kernel[:, :, ::step_in, ::step_out], bias[::step_out]


def transplant_vgg16_classifier(model, fc1, fc2, predictions=None):
    """Put VGG16's ImageNet classifier into a model's convolutional fc6/fc7 (and fc8 if shapes fit).

    FCN (fc6 7x7x512x4096) takes the reshaped kernels as they are; DeepLab v1/v2 (fc6 3x3 with 1024
    channels) takes them decimated (:func:`subsample_fc6`). ``fc8`` (or FCN's ``score_fr``) is set
    only when ``predictions`` is given and the class count matches. Every fc6_*/fc7_* branch of
    DeepLab v2's ASPP receives the same weights, as in the reference initialisation.
    """
    converted = classifier_as_convolutions(fc1, fc2, predictions)
    names = [layer.name for layer in model.layers]
    fc6_layers = [n for n in names if re.fullmatch(r"fc6(_\d+)?", n)]  # DeepLab v2 branches: fc6_1..fc6_4
    if not fc6_layers:
        raise ValueError(f"model {model.name!r} has no fc6 layer to receive the VGG16 classifier")
    for fc6_name in fc6_layers:
        suffix = fc6_name[3:]
        fc6 = model.get_layer(fc6_name)
        fc7 = model.get_layer(f"fc7{suffix}")
        kernel6, bias6 = converted["fc6"]
        kernel7, bias7 = converted["fc7"]
        target6 = tuple(fc6.kernel.shape)
        if target6 != kernel6.shape:
            kernel6, bias6 = subsample_fc6(kernel6, bias6, spatial=target6[0], channels=target6[3])
            kernel7, bias7 = subsample_fc7(kernel7, bias7, channels=fc7.kernel.shape[3])
        fc6.set_weights([kernel6, bias6])
        fc7.set_weights([kernel7, bias7])
        fc8_name = f"fc8{suffix}" if f"fc8{suffix}" in names else "score_fr"
        if "fc8" in converted and fc8_name in names:  # DeconvNet has no fc8: its scores come after the decoder
            fc8 = model.get_layer(fc8_name)
            if tuple(fc8.kernel.shape) == converted["fc8"][0].shape:
                fc8.set_weights(list(converted["fc8"]))


def load_vgg16_classifier(model, source="imagenet", cache_dir=None):
    """Load fc6/fc7 (and fc8 where shapes fit) of ``model`` from VGG16's ImageNet classifier.

    ``source``: ``"imagenet"`` (keras.applications' full VGG16 file, hash-verified, see
    ``tfseg.backbones.weights``) or the path of a legacy Keras HDF5 file holding layers ``fc1``,
    ``fc2`` (and ``predictions``).
    """
    from tfseg.backbones.weights import WeightsMismatchError, read_legacy_h5_weights, weights_file

    path = weights_file("vgg16_top", cache_dir=cache_dir) if source == "imagenet" else source
    layers = read_legacy_h5_weights(path)
    missing = [name for name in ("fc1", "fc2") if name not in layers]
    if missing:
        raise WeightsMismatchError(f"{path}: no layer(s) {missing}; a VGG16 file with its classifier is needed")

    def pair(name):
        arrays = [array for _, array in layers[name]]
        if len(arrays) != 2:
            raise WeightsMismatchError(f"{path}: layer {name!r} holds {len(arrays)} tensors; expected kernel and bias")
        return tuple(arrays)

    predictions = pair("predictions") if "predictions" in layers else None
    transplant_vgg16_classifier(model, pair("fc1"), pair("fc2"), predictions)
