"""Fully convolutional networks FCN-32s / 16s / 8s (Long, Shelhamer & Darrell, CVPR 2015).

Faithful to the reference Caffe nets (voc-fcn{32,16,8}s): conv1_1 padded by 100 so any input size
works, VGG16 trunk with Caffe ceil-mode 2x2 pooling, fc6 = 7x7 VALID conv 4096 and fc7 = 1x1 conv
4096 (the ImageNet classifier reshaped, see ``tfseg.backbones.vgg.classifier_as_convolutions``),
zero-initialised score layers, transposed-convolution upsampling initialised to bilinear, and
Caffe's crop offsets so that the output aligns with the input.

Upsampling: the reference nets (fcn.berkeleyvision.org ``voc-fcn*/net.py``) fix every
deconvolution to bilinear interpolation (``lr_mult: 0``), which is the default here
(``learnable_upsampling=False``); ``learnable_upsampling=True`` makes every upsampling layer
trainable from its bilinear initialisation (the CVPR paper learned the 2x ones).

``backbone_weights`` loads the ImageNet convolutional trunk; ``classifier_weights`` ("imagenet" or
a VGG16 HDF5 file with its classifier) loads fc6/fc7 from the classifier's Dense layers, as the
paper initialises them. The logits are float32 under a mixed-precision policy.
"""

from __future__ import annotations

import keras

from tfseg.backbones import build_backbone, weight_options
from tfseg.backbones.vgg import load_vgg16_classifier
from tfseg.layers.initializers import BilinearUpsampling
from tfseg.layers.preprocessing import ImagePreprocessing
from tfseg.layers.spatial import CropLike

# Crop offsets of the reference nets, for the 100-pixel input padding.
FCN_INPUT_PADDING = 100
FCN_CROP_OFFSETS = {
    "fcn32s": {"upscore": 19},
    "fcn16s": {"score_pool4": 5, "upscore16": 27},
    "fcn8s": {"score_pool4": 5, "score_pool3": 9, "upscore8": 31},
}
# "At-once" FCN-8s (Shelhamer et al. 2017) scales the pool4 and pool3 features before scoring.
AT_ONCE_SCALES = {"pool4": 0.01, "pool3": 0.0001}


def _upsample(x, num_classes, factor, name, trainable):
    return keras.layers.Conv2DTranspose(
        num_classes, 2 * factor, strides=factor, use_bias=False,
        kernel_initializer=BilinearUpsampling(), trainable=trainable, name=name,
    )(x)


def _score(x, num_classes, name):
    return keras.layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name=name)(x)


def _check_backbone(backbone):
    if backbone != "vgg16":
        raise ValueError(f"FCN is defined on VGG16; backbone={backbone!r} is not supported (valid: 'vgg16')")


def _fcn_trunk(input_shape, include_preprocessing, dropout, weights):
    """Image -> (inputs, features dict, fc7 output) shared by the three variants.

    ``weights``: ``build_backbone``'s weight options.
    """
    inputs = keras.Input(input_shape, name="image")
    x = ImagePreprocessing("caffe", name="preprocessing")(inputs) if include_preprocessing else inputs
    # Caffe's conv1_1 "pad: 100"; the backbone's own 'same' padding adds the last pixel.
    x = keras.layers.ZeroPadding2D(FCN_INPUT_PADDING - 1, name="pad100")(x)
    backbone = build_backbone("vgg16", x.shape[1:], output_stride=32, pooling="fcn", **weights)
    features = backbone(x)
    h = keras.layers.Conv2D(4096, 7, padding="valid", activation="relu", name="fc6")(features["P5"])
    h = keras.layers.Dropout(dropout, name="drop6")(h)
    h = keras.layers.Conv2D(4096, 1, activation="relu", name="fc7")(h)
    h = keras.layers.Dropout(dropout, name="drop7")(h)
    return inputs, features, h


def _crop_to_input(upscored, inputs, offset):
    return CropLike(offset, dtype="float32", name="score")([upscored, inputs])


def _finish(model, classifier_weights):
    if classifier_weights is not None:
        load_vgg16_classifier(model, classifier_weights)
    return model


def _fuse_skip(upscored, pool, pool_name, num_classes, offset, at_once):
    """Score a pool layer (zero-initialised), crop it onto the upsampled scores and add them."""
    if at_once:
        pool = keras.layers.Rescaling(AT_ONCE_SCALES[pool_name], name=f"scale_{pool_name}")(pool)
    score = _score(pool, num_classes, f"score_{pool_name}")
    score = CropLike(offset, name=f"score_{pool_name}c")([score, upscored])
    return keras.layers.Add(name=f"fuse_{pool_name}")([upscored, score])


def fcn32s(num_classes, input_shape=(None, None, 3), *, backbone="vgg16", backbone_weights=None,
           backbone_weights_hash=None, allow_unverified_weights=False, classifier_weights=None,
           include_preprocessing=True, dropout=0.5, learnable_upsampling=False):
    """FCN-32s: fc7 scores upsampled 32x in one step."""
    _check_backbone(backbone)
    offsets = FCN_CROP_OFFSETS["fcn32s"]
    inputs, _, h = _fcn_trunk(
        input_shape, include_preprocessing, dropout,
        weight_options(backbone_weights, backbone_weights_hash, allow_unverified_weights),
    )
    score = _score(h, num_classes, "score_fr")
    up = _upsample(score, num_classes, 32, "upscore", learnable_upsampling)
    logits = _crop_to_input(up, inputs, offsets["upscore"])
    return _finish(keras.Model(inputs, logits, name="fcn32s"), classifier_weights)


def fcn16s(num_classes, input_shape=(None, None, 3), *, backbone="vgg16", backbone_weights=None,
           backbone_weights_hash=None, allow_unverified_weights=False, classifier_weights=None,
           include_preprocessing=True, dropout=0.5, at_once=False, learnable_upsampling=False):
    """FCN-16s: adds a zero-initialised score on pool4 fused at stride 16."""
    _check_backbone(backbone)
    offsets = FCN_CROP_OFFSETS["fcn16s"]
    inputs, features, h = _fcn_trunk(
        input_shape, include_preprocessing, dropout,
        weight_options(backbone_weights, backbone_weights_hash, allow_unverified_weights),
    )
    up2 = _upsample(_score(h, num_classes, "score_fr"), num_classes, 2, "upscore2", learnable_upsampling)
    fused = _fuse_skip(up2, features["P4"], "pool4", num_classes, offsets["score_pool4"], at_once)
    up16 = _upsample(fused, num_classes, 16, "upscore16", learnable_upsampling)
    logits = _crop_to_input(up16, inputs, offsets["upscore16"])
    return _finish(keras.Model(inputs, logits, name="fcn16s"), classifier_weights)


def fcn8s(num_classes, input_shape=(None, None, 3), *, backbone="vgg16", backbone_weights=None,
          backbone_weights_hash=None, allow_unverified_weights=False, classifier_weights=None,
          include_preprocessing=True, dropout=0.5, at_once=False, learnable_upsampling=False):
    """FCN-8s: scores on pool4 and pool3 fused at strides 16 and 8."""
    _check_backbone(backbone)
    offsets = FCN_CROP_OFFSETS["fcn8s"]
    inputs, features, h = _fcn_trunk(
        input_shape, include_preprocessing, dropout,
        weight_options(backbone_weights, backbone_weights_hash, allow_unverified_weights),
    )
    up2 = _upsample(_score(h, num_classes, "score_fr"), num_classes, 2, "upscore2", learnable_upsampling)
    fused4 = _fuse_skip(up2, features["P4"], "pool4", num_classes, offsets["score_pool4"], at_once)
    up4 = _upsample(fused4, num_classes, 2, "upscore_pool4", learnable_upsampling)
    fused3 = _fuse_skip(up4, features["P3"], "pool3", num_classes, offsets["score_pool3"], at_once)
    up8 = _upsample(fused3, num_classes, 8, "upscore8", learnable_upsampling)
    logits = _crop_to_input(up8, inputs, offsets["upscore8"])
    return _finish(keras.Model(inputs, logits, name="fcn8s"), classifier_weights)
