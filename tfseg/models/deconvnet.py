"""DeconvNet (Noh, Hong & Han, "Learning Deconvolution Network for Semantic Segmentation", ICCV 2015).

Faithful to the reference Caffe net (``DeconvNet_inference_deploy.prototxt``): VGG16's 13
convolutions with BN and ReLU and 2x2 max pooling that keeps its switches; fc6 a 7x7 VALID
convolution with 4096 channels and fc7 a 1x1 one (both with BN and ReLU); ``fc6_deconv`` a 7x7
VALID transposed convolution back to 512 channels; then a decoder mirroring the encoder, each
pooling becoming an unpooling and each convolution a 3x3 transposed convolution with BN and ReLU;
a 1x1 convolution scores the classes.

At the paper's 224x224 input, pool5 is 7x7 and fc6 gives a 1x1 map. Larger inputs run the same
layers fully convolutionally; a pool5 smaller than 7x7 (inputs of 192 pixels or fewer) is zero-padded at
the bottom/right up to 7x7 and the padding is cropped after ``fc6_deconv``, so any size works.

``backbone_weights`` loads VGG16's ImageNet convolutions; ``classifier_weights`` ("imagenet" or a
VGG16 HDF5 file with its classifier) loads fc6/fc7 from the classifier's Dense layers reshaped, as
the paper initialises them. Otherwise layers start from Keras' default (Glorot uniform) initialisation.
"""

from __future__ import annotations

import keras

from tfseg.backbones.vgg import load_vgg16_classifier
from tfseg.layers.spatial import CropLike, PadToMinimumSize
from tfseg.layers.unpooling import MaxUnpooling2D
from tfseg.models.segnet import check_input_shape, load_vgg16_convolutions, preprocessed_input, vgg16_bn_encoder

FC_CHANNELS = 4096
FC6_KERNEL = 7
# The decoder: for each encoder block, deepest first, the output channels of deconv{b}_1, deconv{b}_2, ...
DECONVNET_DECODER = ((5, (512, 512, 512)), (4, (512, 512, 256)), (3, (256, 256, 128)), (2, (128, 64)), (1, (64, 64)))


def bn_relu(x, name):
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def deconv_bn_relu(x, filters, kernel_size, name, padding="same"):
    """Transposed convolution (stride 1) + BN + ReLU, DeconvNet's decoder unit."""
    x = keras.layers.Conv2DTranspose(filters, kernel_size, padding=padding, name=name)(x)
    return bn_relu(x, name)


def deconvnet(num_classes, input_shape=(None, None, 3), *, backbone_weights=None, classifier_weights=None,
              include_preprocessing=True):
    """DeconvNet: VGG16-BN encoder, fc6/fc7 convolutions, and a mirrored unpooling/deconvolution decoder."""
    check_input_shape("deconvnet", input_shape)
    inputs, x = preprocessed_input(input_shape, "caffe", include_preprocessing)
    encoder = vgg16_bn_encoder(x.shape[1:])
    if backbone_weights is not None:
        load_vgg16_convolutions(encoder, backbone_weights)
    features = encoder(x)
    pool5 = features["P5"]
    x = PadToMinimumSize(FC6_KERNEL, name="fc6_pad")(pool5)
    x = keras.layers.Conv2D(FC_CHANNELS, FC6_KERNEL, padding="valid", name="fc6")(x)
    x = bn_relu(x, "fc6")
    x = keras.layers.Conv2D(FC_CHANNELS, 1, name="fc7")(x)
    x = bn_relu(x, "fc7")
    x = deconv_bn_relu(x, pool5.shape[-1], FC6_KERNEL, "fc6_deconv", padding="valid")
    x = CropLike(0, name="fc6_deconv_crop")([x, pool5])
    for block, filters in DECONVNET_DECODER:
        x = MaxUnpooling2D(2, name=f"unpool{block}")([x, features[f"P{block}_mask"]])
        for index, channels in enumerate(filters, start=1):
            x = deconv_bn_relu(x, channels, 3, f"deconv{block}_{index}")
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
    model = keras.Model(inputs, logits, name="deconvnet")
    if classifier_weights is not None:
        load_vgg16_classifier(model, classifier_weights)
    return model
