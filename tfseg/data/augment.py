"""DeepLab's training augmentation in TF ops: random scale, pad to the crop, random crop, flip.

As in the official DeepLab input pipeline (``research/deeplab/input_preprocess.py``): scale by a
factor drawn uniformly from [0.5, 2.0] (bilinear for the image, nearest for the label), pad to
at least the crop size with the mean pixel (image) and the ignore label (label), take a random
crop, flip left-right with probability 0.5. Optional photometric jitter (brightness, contrast,
saturation, hue, as torchvision's ``ColorJitter``) varies lighting, which CamVid's dusk frames need. Pixels stay raw RGB in [0, 255]: scaling to the
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


def rare_class_crop(image, label, size, seed, class_priority, ignore_label):
    """A crop that holds a pixel of a class drawn among the label's classes by ``class_priority``.

    The class is drawn with probability proportional to its priority (for example the
    median-frequency weights: rare classes first) among the classes present; then one of its pixels
    uniformly, then the crop uniformly among the crops that contain that pixel. A label with no
    class of positive priority gets a uniform crop. Over-sampling rare classes at the crop level
    is class-balanced sampling (as in Zou et al., ECCV 2018, and DAFormer's rare-class sampling).
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    priority = tf.constant(class_priority, tf.float32)
    num_classes = len(class_priority)
    flat = tf.reshape(label, [-1])
    known = tf.logical_and(flat >= 0, flat < num_classes)
    present = tf.math.bincount(tf.boolean_mask(flat, known), minlength=num_classes, maxlength=num_classes) > 0
    drawable = tf.logical_and(present, tf.range(num_classes) != ignore_label)
    weights = tf.where(drawable, priority, 0.0)
    shape = tf.shape(label)
    limit = shape - tf.constant(size, tf.int32) + 1

    def on_a_rare_pixel():
        chosen = tf.random.stateless_categorical(tf.math.log(weights)[None], 1, seeds[0], dtype=tf.int32)[0, 0]
        where = tf.where(tf.equal(label, chosen))
        pick = tf.random.stateless_uniform([], seeds[1], 0, tf.shape(where, out_type=tf.int32)[0], dtype=tf.int32)
        pixel = tf.cast(where[pick], tf.int32)
        lowest = tf.maximum(pixel - tf.constant(size, tf.int32) + 1, 0)
        highest = tf.minimum(pixel, limit - 1)
        span = highest - lowest + 1
        return lowest + tf.random.stateless_uniform([2], seeds[2], 0, tf.int32.max, dtype=tf.int32) % span

    def anywhere():
        return tf.random.stateless_uniform([2], seeds[2], 0, tf.int32.max, dtype=tf.int32) % limit

    offset = tf.cond(tf.reduce_sum(weights) > 0, on_a_rare_pixel, anywhere)
    image = image[offset[0] : offset[0] + size[0], offset[1] : offset[1] + size[1]]
    label = label[offset[0] : offset[0] + size[0], offset[1] : offset[1] + size[1]]
    return image, label


def random_flip(image, label, seed):
    flip = tf.random.stateless_uniform([], seed) < 0.5
    image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
    label = tf.cond(flip, lambda: label[:, ::-1], lambda: label)
    return image, label


JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")


def check_color_jitter(jitter):
    """``jitter`` as a dict of the four strengths (missing ones 0); None or {} means no jitter."""
    if not jitter:
        return None
    if not isinstance(jitter, dict):
        raise ValueError(f"color_jitter={jitter!r}: expected a mapping with keys among {list(JITTER_KEYS)}")
    unknown = sorted(set(jitter) - set(JITTER_KEYS))
    if unknown:
        raise ValueError(f"color_jitter: unknown key(s) {unknown}; valid: {list(JITTER_KEYS)}")
    out = {key: float(jitter.get(key, 0.0)) for key in JITTER_KEYS}
    limits = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.5}
    for key, value in out.items():
        if not 0.0 <= value <= limits[key]:
            raise ValueError(f"color_jitter[{key!r}]={value}: expected 0 <= value <= {limits[key]}")
    return out


def color_jitter(image, seed, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
    """Photometric jitter of a float RGB image in [0, 255], in torchvision's ``ColorJitter`` sense.

    Brightness, contrast and saturation multiply by a factor drawn from ``[1 - s, 1 + s]`` (contrast
    about the image's mean grey level, saturation about each pixel's grey level); hue shifts by a
    fraction of the colour circle drawn from ``[-hue, hue]``. The result is clipped to [0, 255].
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)

    def factor(strength, s):
        return tf.random.stateless_uniform([], s, 1.0 - strength, 1.0 + strength)

    if brightness:
        image = image * factor(brightness, seeds[0])
    if contrast:
        grey = tf.reduce_mean(tf.image.rgb_to_grayscale(image))
        image = (image - grey) * factor(contrast, seeds[1]) + grey
    if saturation:
        grey = tf.image.rgb_to_grayscale(image)
        image = (image - grey) * factor(saturation, seeds[2]) + grey
    image = tf.clip_by_value(image, 0.0, 255.0)
    if hue:
        delta = tf.random.stateless_uniform([], seeds[3], -hue, hue)
        image = tf.image.adjust_hue(image / 255.0, delta) * 255.0
        image = tf.clip_by_value(image, 0.0, 255.0)
    return image


def deeplab_augment(image, label, seed, crop_size, ignore_label, scale_range=(0.5, 2.0), flip=True,
                    mean_pixel=MEAN_PIXEL, jitter=None, rare_class=None):
    """Augment one example: ``image`` [H, W, 3] (any dtype), ``label`` [H, W]; ``seed`` is a shape-[2] int tensor.

    ``jitter``: None, or the strengths of :func:`color_jitter`, applied before padding so the
    padding keeps the mean pixel. ``rare_class``: None, or ``(probability, class_priority)``: that
    share of the crops is a :func:`rare_class_crop`. Returns a float32 image and an int32 label of
    exactly ``crop_size``.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    image = tf.cast(image, tf.float32)
    label = tf.cast(label, tf.int32)
    if jitter:
        image = color_jitter(image, tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 1), **jitter)
    image, label = random_scale(image, label, seeds[0], scale_range)
    image, label = pad_to_size(image, label, crop_size, ignore_label, mean_pixel)
    if rare_class and rare_class[0] > 0:
        probability, priority = rare_class
        crop_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 2)
        image, label = tf.cond(
            tf.random.stateless_uniform([], crop_seed) < probability,
            lambda: rare_class_crop(image, label, crop_size, tf.random.experimental.stateless_fold_in(crop_seed, 1),
                                    priority, ignore_label),
            lambda: random_crop(image, label, crop_size, seeds[1]),
        )
    else:
        image, label = random_crop(image, label, crop_size, seeds[1])
    if flip:
        image, label = random_flip(image, label, seeds[2])
    image = tf.ensure_shape(image, (*crop_size, 3))
    label = tf.ensure_shape(label, tuple(crop_size))
    return image, label
