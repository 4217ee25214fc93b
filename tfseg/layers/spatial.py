"""Shape-dynamic spatial layers: resize or crop one tensor to the size of another.

They take the reference size from the tensor at run time, so models accept any input size,
odd ones such as 513x513 included.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfseg")
class ResizeLike(keras.layers.Layer):
    """Bilinear (or nearest) resize of ``inputs[0]`` to the spatial size of ``inputs[1]``.

    ``align_corners=True`` is what the official DeepLab code uses internally; ``False`` gives
    half-pixel centres (``tf.image.resize``), which every TFLite delegate handles.
    """

    def __init__(self, align_corners=False, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation={interpolation!r}; valid: 'bilinear', 'nearest'")
        self.align_corners = bool(align_corners)
        self.interpolation = interpolation

    def call(self, inputs):
        x, reference = inputs
        size = tf.shape(reference)[1:3]
        op = tf.raw_ops.ResizeBilinear if self.interpolation == "bilinear" else tf.raw_ops.ResizeNearestNeighbor
        y = op(images=x, size=size, align_corners=self.align_corners, half_pixel_centers=not self.align_corners)
        return tf.cast(y, x.dtype)

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "align_corners": self.align_corners, "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="tfseg")
class CropLike(keras.layers.Layer):
    """Crop ``inputs[0]`` to the spatial size of ``inputs[1]``.

    ``offset``: an int (Caffe's Crop layer: same offset on both axes) or ``"center"`` (U-Net's
    crop of the contracting path's features).
    """

    def __init__(self, offset=0, **kwargs):
        super().__init__(**kwargs)
        if offset != "center" and not isinstance(offset, int):
            raise ValueError(f"offset must be an int or 'center', got {offset!r}")
        self.offset = offset

    def call(self, inputs):
        x, reference = inputs
        height, width = tf.shape(reference)[1], tf.shape(reference)[2]
        if self.offset == "center":
            top = (tf.shape(x)[1] - height) // 2
            left = (tf.shape(x)[2] - width) // 2
        else:
            top = left = self.offset
        return x[:, top : top + height, left : left + width, :]

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


@keras.saving.register_keras_serializable(package="tfseg")
class PadToMultiple(keras.layers.Layer):
    """Zero-pad height and width at the bottom/right up to a multiple of ``multiple``."""

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        m = self.multiple
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        pad_h = (m - height % m) % m
        pad_w = (m - width % m) % m
        padded = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        if x.shape[-1] is None:
            return padded
        # Run-time paddings hide the channel count from the TFLite converter's shape inference,
        # and its Conv2D needs it: restate it (a reshape to the same shape).
        shape = tf.shape(padded)
        return tf.reshape(padded, [shape[0], shape[1], shape[2], x.shape[-1]])

    def compute_output_shape(self, input_shape):
        def up(n):
            return None if n is None else -(-n // self.multiple) * self.multiple

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="tfseg")
class PadToMinimumSize(keras.layers.Layer):
    """Zero-pad height and width at the bottom/right up to at least ``min_size`` (larger inputs pass unchanged)."""

    def __init__(self, min_size, **kwargs):
        super().__init__(**kwargs)
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ValueError(f"min_size must be a positive int, got {min_size!r}")
        self.min_size = min_size

    def call(self, x):
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        pad_h = tf.maximum(self.min_size - height, 0)
        pad_w = tf.maximum(self.min_size - width, 0)
        return tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        def up(n):
            return None if n is None else max(n, self.min_size)

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "min_size": self.min_size}
