"""Input scaling inside the model, so exported graphs take raw RGB pixels in [0, 255]."""

from __future__ import annotations

import keras
import tensorflow as tf

# keras.applications "caffe" mode: RGB -> BGR, subtract the ImageNet BGR mean (VGG16, ResNet v1 weights).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
PREPROCESSING_MODES = ("caffe", "tf", "none")
# Channels each mode needs (None: any): "caffe" reorders RGB to BGR and subtracts a 3-vector.
PREPROCESSING_CHANNELS = {"caffe": 3, "tf": None, "none": None}


@keras.saving.register_keras_serializable(package="tfseg")
class ImagePreprocessing(keras.layers.Layer):
    """Map raw RGB pixels to what a backbone's weights expect.

    ``caffe``: RGB->BGR and ImageNet mean subtraction (keras.applications VGG16/ResNet50/101);
    ``tf``: ``x / 127.5 - 1`` (Xception, MobileNetV2); ``none``: identity.
    """

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"preprocessing mode {mode!r}; valid: {list(PREPROCESSING_MODES)}")
        self.mode = mode

    def build(self, input_shape):
        channels = input_shape[-1]
        needed = PREPROCESSING_CHANNELS[self.mode]
        if needed is not None and channels != needed:
            raise ValueError(
                f"input shape {tuple(input_shape)}: the '{self.mode}' preprocessing of this backbone (layer "
                f"'{self.name}') takes RGB images with {needed} channels, got {channels}; give an input_shape "
                f"with {needed} channels, or include_preprocessing=False to feed inputs already scaled"
            )

    def call(self, x):
        x = tf.cast(x, self.compute_dtype)
        if self.mode == "caffe":
            return x[..., ::-1] - tf.constant(CAFFE_BGR_MEAN, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
