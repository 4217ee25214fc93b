"""Class probabilities of images by every inference mode, the same for every model format.

One function, ``probabilities(logits_fn, images, options, protocol)``, where ``logits_fn`` maps
float RGB pixels ``[B, h, w, 3]`` to logits ``[B, h, w, C]`` (a Keras model, or an exported file's
log-probabilities: a softmax ignores a per-pixel constant). Built from TF ops, so it runs eagerly
around a file and inside ``tf.function`` / ``strategy.run`` around a Keras model. In order:

1. the model's input protocol (``tfseg.inference.protocol``): the official ``resize_to_range``
   (bilinear, ``align_corners=True``), then padding bottom/right to the canvas with the mean pixel;
2. the mode: whole image, or multi-scale + flip as the official ``predict_labels_multi_scale``
   (each scale resizes the (padded) image to ``int((size - 1) * s + 1)`` with ``align_corners``,
   the logits are resized back, softmax, averaged over scales and flips), or a sliding window
   (overlapping crops, their softmax averaged where they overlap);
3. the canvas cropped off and the resize undone (bilinear, ``align_corners=True``).

The official code resizes the network's stride-``OS`` logits to the largest scale's logit size
and then to the canvas; a tfseg model returns logits already upsampled to its input, which are
resized to the canvas once (the same at scale 1, a different interpolation path at other scales).
The dense CRF (``refine_with_crf``) runs after, on the probabilities at the image's size.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfseg.inference.protocol import WHOLE_IMAGE, InputProtocol

DEEPLAB_EVAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
WINDOW_CONFLICT = "sliding-window inference runs at scale 1.0 without flips: drop scales/flip or the window"


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """The inference mode: ``scales`` (and ``flip``), or a sliding ``window`` (H, W) with ``window_stride``;
    ``protocol`` overrides the model's own input protocol (None keeps it)."""

    scales: tuple = (1.0,)
    flip: bool = False
    window: tuple | None = None
    window_stride: tuple | None = None
    protocol: InputProtocol | None = None

    def __post_init__(self):
        try:
            scales = tuple(float(s) for s in self.scales)
        except (TypeError, ValueError):
            scales = ()
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive numbers; got {self.scales!r}")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "flip", bool(self.flip))
        for key in ("window", "window_stride"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _size(value, key))
        if self.window_stride is not None and self.window is None:
            raise ValueError("window_stride needs a window")
        if self.window is not None and (self.scales != (1.0,) or self.flip):
            raise ValueError(WINDOW_CONFLICT)
        if self.protocol is not None and not isinstance(self.protocol, InputProtocol):
            raise TypeError(f"protocol must be a tfseg.inference.protocol.InputProtocol; got {self.protocol!r}")

    def describe(self, protocol=WHOLE_IMAGE):
        if self.window is not None:
            mode = f"sliding {self.window[0]}x{self.window[1]} window"
        elif self.scales != (1.0,) or self.flip:
            mode = f"scales {', '.join(f'{s:g}' for s in self.scales)}" + (" + flip" if self.flip else "")
        else:
            mode = "single scale"
        return f"{mode}; {(self.protocol or protocol).describe()}"


def _size(value, key):
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be (height, width); got {value!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"{key} must be two positive integers; got {value!r}")
    return height, width


def resize_to_size(images, size, method="bilinear"):
    """``images`` [B, h, w, K] resized to ``size`` (H, W), half-pixel centres: the one resize to a fixed size,
    for a fixed-size graph's input and output here and for int8 calibration and parity images."""
    return tf.image.resize(images, size, method=method)


def resized_pixels(image, size):
    """uint8 RGB [H, W, 3] as a fixed-size graph of ``size`` is fed it (``resize_to_size``, rounded to uint8)."""
    import numpy as np

    resized = resize_to_size(tf.constant(image[None], tf.float32), size)[0].numpy()
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def resized_labels(label, size):
    """A label map [H, W] at ``size`` by nearest neighbour (``resize_to_size``)."""
    label = tf.constant(label[None, ..., None])
    return resize_to_size(label, size, method="nearest")[0, ..., 0].numpy()


def resize_align_corners(images, size):
    """Bilinear resize with ``align_corners=True`` (the official DeepLab resizes; TF1's ``resize_bilinear``)."""
    return tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=True, half_pixel_centers=False)


def official_resized_size(height, width, min_size, max_size, factor):
    """Output size of the official ``preprocess_utils.resize_to_range`` (float32 arithmetic, as there).

    The short side goes to ``min_size`` unless the long side would then pass ``max_size``
    (lowered to a multiple of ``factor`` plus one), else the long side goes to it; each side is
    then raised to a multiple of ``factor`` plus one.
    """
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    max_size = float(max_size + (factor - (max_size - 1) % factor) % factor - factor)
    large = tf.cast(tf.math.ceil(tf.stack([height, width]) * (min_size / tf.minimum(height, width))), tf.int32)
    small = tf.cast(tf.math.ceil(tf.stack([height, width]) * (max_size / tf.maximum(height, width))), tf.int32)
    size = tf.where(tf.cast(tf.reduce_max(large), tf.float32) > max_size, small, large)
    return size + (factor - (size - 1) % factor) % factor


def official_scaled_size(size, scale):
    """``int((size - 1) * scale + 1)`` in float32, as the official ``model.scale_dimension``."""
    return tf.cast((tf.cast(size, tf.float32) - 1.0) * scale + 1.0, tf.int32)


def pad_to_at_least(images, size, value):
    """``images`` padded bottom/right with ``value`` to at least ``size`` (H, W)."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    paddings = [[0, 0], [0, tf.maximum(size[0] - height, 0)], [0, tf.maximum(size[1] - width, 0)], [0, 0]]
    return tf.pad(images - value, paddings) + value


def multi_scale_probabilities(logits_fn, images, scales=(1.0,), flip=False):
    """Softmax ``[B, H, W, C]`` averaged over ``scales`` (and left-right flips), each at ``images``' size."""
    size = tf.shape(images)[1:3]
    total, count = None, 0
    for scale in scales:
        scaled = images if scale == 1.0 else resize_align_corners(images, official_scaled_size(size, scale))
        views = [(scaled, False)] + ([(tf.reverse(scaled, [2]), True)] if flip else [])
        for view, flipped in views:
            logits = tf.cast(logits_fn(view), tf.float32)
            if flipped:
                logits = tf.reverse(logits, [2])
            if scale != 1.0:
                logits = resize_align_corners(logits, size)
            probabilities = tf.nn.softmax(logits)
            total = probabilities if total is None else total + probabilities
            count += 1
    return total / count


def sliding_window_probabilities(logits_fn, images, window, num_classes, stride=None, pad_value=127.5):
    """Softmax from overlapping ``window`` crops (H, W), averaged where they overlap.

    The image is padded bottom/right with ``pad_value`` to at least the window; windows start
    every ``stride`` pixels (default two thirds of the window) and the last one is aligned with
    the far edge; the padding is cropped off the result.
    """
    window = _size(window, "window")
    stride = _size(stride, "window_stride") if stride else (max(1, window[0] * 2 // 3), max(1, window[1] * 2 // 3))
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    padded = pad_to_at_least(images, window, pad_value)
    padded_h, padded_w = tf.shape(padded)[1], tf.shape(padded)[2]

    def starts(length, size, step):
        count = (length - size + step - 1) // step + 1
        return tf.minimum(tf.range(count) * step, length - size)

    ys, xs = starts(padded_h, window[0], stride[0]), starts(padded_w, window[1], stride[1])
    grid = tf.reshape(tf.stack(tf.meshgrid(ys, xs, indexing="ij"), -1), [-1, 2])

    def accumulate(i, total, counts):
        y, x = grid[i, 0], grid[i, 1]
        crop = tf.ensure_shape(padded[:, y : y + window[0], x : x + window[1]], [None, *window, 3])
        probabilities = tf.nn.softmax(tf.cast(logits_fn(crop), tf.float32))
        paddings = [[0, 0], [y, padded_h - y - window[0]], [x, padded_w - x - window[1]], [0, 0]]
        covered = tf.pad(tf.ones_like(probabilities[..., :1]), paddings)
        return i + 1, total + tf.pad(probabilities, paddings), counts + covered

    batch = tf.shape(images)[0]
    total = tf.zeros([batch, padded_h, padded_w, num_classes])
    counts = tf.zeros([batch, padded_h, padded_w, 1])
    _, total, counts = tf.while_loop(lambda i, *_: i < tf.shape(grid)[0], accumulate, (0, total, counts))
    return (total / counts)[:, :height, :width]


def probabilities(logits_fn, images, num_classes, options=None, protocol=WHOLE_IMAGE, fixed_size=None):
    """Class probabilities ``[B, H, W, C]`` (``C = num_classes``) of ``images`` (float RGB ``[B, H, W, 3]``).

    ``options``: an ``InferenceOptions`` (its ``protocol``, when set, replaces ``protocol``).
    ``fixed_size``: the (H, W) a fixed-size graph takes; a whole image of another size is then
    stretched to it and its probabilities stretched back (``check_fixed_size`` says what else fits).
    """
    options = options or InferenceOptions()
    protocol = options.protocol or protocol
    if fixed_size is not None and tuple(images.shape[1:3]) == tuple(fixed_size):
        fixed_size = None  # the image is the graph's size: nothing to stretch
    size = tf.shape(images)[1:3]
    plain = options.window is None and options.scales == (1.0,) and not options.flip
    if plain and protocol.is_whole_image and fixed_size is None:
        return tf.nn.softmax(tf.cast(logits_fn(images), tf.float32))  # any output size (valid-convolution U-Net)
    inputs = images
    if protocol.resize is not None:
        inputs = resize_align_corners(images, official_resized_size(size[0], size[1], *protocol.resize))
    inner = tf.shape(inputs)[1:3]
    if options.window is not None:
        result = sliding_window_probabilities(logits_fn, inputs, options.window, num_classes,
                                              options.window_stride, protocol.pad_value)
    elif protocol.canvas is not None:
        canvas = pad_to_at_least(inputs, protocol.canvas, protocol.pad_value)
        result = multi_scale_probabilities(logits_fn, canvas, options.scales, options.flip)[:, : inner[0], : inner[1]]
    elif fixed_size is not None:
        stretched = resize_to_size(inputs, fixed_size)
        result = resize_to_size(multi_scale_probabilities(logits_fn, stretched, options.scales, options.flip), inner)
    else:
        result = multi_scale_probabilities(logits_fn, inputs, options.scales, options.flip)
    if protocol.resize is not None:
        result = resize_align_corners(result, size)
    return result


def check_fixed_size(fixed_size, options, protocol, image_size, what):
    """Raise a ValueError naming ``what`` when a fixed-size graph cannot run ``options`` on an image."""
    if fixed_size is None:
        return
    fixed = f"{what} takes only {fixed_size[0]}x{fixed_size[1]} images"
    protocol = options.protocol or protocol
    if options.scales != (1.0,):
        raise ValueError(f"{fixed}: multi-scale inference needs a graph of any size (the Keras model, a SavedModel, "
                         "or a TFLite file exported without --input-size)")
    if options.window is not None and tuple(options.window) != tuple(fixed_size):
        raise ValueError(f"{fixed}: use a window of that size, not {options.window[0]}x{options.window[1]}")
    if options.window is None and protocol.canvas is not None:
        height, width = image_size
        if protocol.resize is None and (height > protocol.canvas[0] or width > protocol.canvas[1]):
            canvas = (max(height, protocol.canvas[0]), max(width, protocol.canvas[1]))
        else:
            canvas = protocol.canvas
        if tuple(canvas) != tuple(fixed_size):
            raise ValueError(f"{fixed}, but this {height}x{width} image goes on a {canvas[0]}x{canvas[1]} canvas "
                             f"({protocol.describe()})")


def check_crf_inside(name, options, protocol):
    """Refuse what a file holding a dense CRF cannot do as the Keras model + CRF does it (refine once, at the end).

    Its CRF refines whatever the file is fed: each scale, flip or window before they are averaged,
    or a padded canvas with its padding; ``Predictor(crf=)`` refines the averaged probabilities
    at the image's own size once.
    """
    if options.window is not None or options.scales != (1.0,) or options.flip:
        raise ValueError(f"{name} holds a dense CRF, which would refine every scale, flip or window before they are "
                         f"averaged ({options.describe()}), not once after as crf= does: infer on the whole image, "
                         "or export the model without --crf and refine here with crf= (--crf)")
    if not protocol.is_whole_image:
        raise ValueError(f"{name} holds a dense CRF, which would refine the image as this protocol feeds it "
                         f"({protocol.describe()}), not at its own size as crf= does: export the model without "
                         "--crf and refine here with crf= (--crf)")


def refine_with_crf(crf_layer, pixels, probabilities):
    """Dense-CRF probabilities of ``probabilities`` ``[B, H, W, C]`` on ``pixels`` (uint8 RGB), unary -log p."""
    logits = crf_layer([pixels, tf.math.log(tf.maximum(probabilities, 1e-30))], training=False)
    return tf.nn.softmax(tf.cast(logits, tf.float32))
