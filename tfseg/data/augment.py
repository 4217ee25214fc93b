"""DeepLab's training augmentation in TF ops: random scale, pad to the crop, random crop, flip.

As in the official DeepLab input pipeline (``research/deeplab/input_preprocess.py``): scale by a
factor drawn uniformly from [0.5, 2.0] (bilinear for the image, nearest for the label), pad to
at least the crop size with the mean pixel (image) and the ignore label (label), take a random
crop, flip left-right with probability 0.5. Pixels stay raw RGB in [0, 255]: scaling to the
backbone's range happens inside the model. Every random choice comes from a stateless seed, so an
example's augmentation is a function of (seed, epoch, position) and a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import tensorflow as tf

# The ImageNet mean pixel (RGB) that DeepLab pads images with.
MEAN_PIXEL = (127.5, 127.5, 127.5)


def random_scale(image, label, seed, scale_range=(0.5, 2.0)):
    lo, hi = scale_range
    if lo == hi == 1.0:
        return image, label
    scale = tf.random.stateless_uniform([], seed, lo, hi)
    size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
    image = tf.image.resize(image, size, method="bilinear")
    label = tf.image.resize(label[..., None], size, method="nearest")[..., 0]
    return image, label


def pad_to_size(image, label, size, ignore_label, mean_pixel=MEAN_PIXEL):
    """Pad bottom/right to at least ``size`` (H, W): image with ``mean_pixel``, label with ``ignore_label``."""
    shape = tf.shape(image)[:2]
    pad_h = tf.maximum(size[0] - shape[0], 0)
    pad_w = tf.maximum(size[1] - shape[1], 0)
    mean = tf.constant(mean_pixel, image.dtype)
    image = tf.pad(image - mean, [[0, pad_h], [0, pad_w], [0, 0]]) + mean
    label = tf.pad(label, [[0, pad_h], [0, pad_w]], constant_values=tf.cast(ignore_label, label.dtype))
    return image, label


def random_crop(image, label, size, seed):
    shape = tf.shape(image)[:2]
    limit = shape - tf.constant(size, tf.int32) + 1
    offset = tf.random.stateless_uniform([2], seed, 0, tf.int32.max, dtype=tf.int32) % limit
    image = image[offset[0] : offset[0] + size[0], offset[1] : offset[1] + size[1]]
    label = label[offset[0] : offset[0] + size[0], offset[1] : offset[1] + size[1]]
    return image, label


def random_flip(image, label, seed):
    flip = tf.random.stateless_uniform([], seed) < 0.5
    image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
    label = tf.cond(flip, lambda: label[:, ::-1], lambda: label)
    return image, label


def deeplab_augment(image, label, seed, crop_size, ignore_label, scale_range=(0.5, 2.0), flip=True,
                    mean_pixel=MEAN_PIXEL):
    """Augment one example: ``image`` [H, W, 3] (any dtype), ``label`` [H, W]; ``seed`` is a shape-[2] int tensor.

    Returns a float32 image and an int32 label of exactly ``crop_size``.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    image = tf.cast(image, tf.float32)
    label = tf.cast(label, tf.int32)
    image, label = random_scale(image, label, seeds[0], scale_range)
    image, label = pad_to_size(image, label, crop_size, ignore_label, mean_pixel)
    image, label = random_crop(image, label, crop_size, seeds[1])
    if flip:
        image, label = random_flip(image, label, seeds[2])
    image = tf.ensure_shape(image, (*crop_size, 3))
    label = tf.ensure_shape(label, tuple(crop_size))
    return image, label
