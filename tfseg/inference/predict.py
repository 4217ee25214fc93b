"""``tfseg.predict``: the label map of an image for any model format, with the same processing everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfseg.inference.runners import load_runner
from tfseg.inference.sources import check_image, read_image


class Predictor:
    """``predictor(image) -> (labels int32 [H, W], probabilities float32 [H, W, C])`` for one model.

    A fixed-size graph gets the image resized (bilinear) to its input size; its probabilities are
    resized back to the image's size before the argmax. ``crf`` (True, DenseCRF options or a
    ``DenseCRF``) joins the serving graph of a Keras model, as in the exports; for a SavedModel or
    TFLite file it runs after the model on the log-probabilities (the same refinement, since
    the CRF's softmax ignores a per-pixel constant). Files exported with ``crf=`` already hold one.
    """

    def __init__(self, model, *, crf=None, num_threads=None):
        self.runner = load_runner(model, crf=crf, num_threads=num_threads)
        self.crf = None
        if crf not in (None, False) and self.runner.format != "keras":
            self.crf = _PostHocCRF(crf, self.runner.num_classes)

    @property
    def num_classes(self):
        return self.runner.num_classes

    def __call__(self, image):
        image = check_image(image)
        height, width = image.shape[:2]
        size = self.runner.input_size
        resized = size is not None and size != (height, width)
        pixels = _resize(image, size) if resized else image
        labels, probabilities = self.runner(pixels[None])
        labels, probabilities = labels[0], probabilities[0]
        if resized:
            probabilities = _resize(probabilities, (height, width))
            labels = probabilities.argmax(-1).astype(np.int32)
        if self.crf is not None:
            labels, probabilities = self.crf(image, probabilities)
        return labels, probabilities


class _PostHocCRF:
    def __init__(self, crf, labels):
        import tensorflow as tf

        from tfseg.export.serving import resolve_crf

        layer = resolve_crf(crf, labels)

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8),
                                      tf.TensorSpec([1, None, None, labels], tf.float32)])
        def refine(image, probabilities):
            logits = layer([image, tf.math.log(tf.maximum(probabilities, 1e-30))], training=False)
            return tf.argmax(logits, -1, output_type=tf.int32), tf.nn.softmax(logits)

        self._refine = refine

    def __call__(self, image, probabilities):
        labels, probabilities = self._refine(image[None], probabilities[None].astype(np.float32))
        return labels.numpy()[0], probabilities.numpy()[0]


def _resize(array, size):
    """Bilinear resize of [H, W, C] to ``size`` (height, width); any channel count."""
    import cv2

    height, width = size
    channels = array.shape[-1]
    # cv2.resize handles at most 512 channels at once.
    parts = [cv2.resize(array[..., i : i + 512], (width, height), interpolation=cv2.INTER_LINEAR)
             for i in range(0, channels, 512)]
    parts = [p[..., None] if p.ndim == 2 else p for p in parts]
    return np.concatenate(parts, axis=-1)


def predict(model, image, *, crf=None, num_threads=None):
    """The label map (int32 [H, W]) of ``image`` under ``model``.

    ``model``: a keras.Model, a ``.keras`` file, a SavedModel folder or ``.tflite`` file exported
    by ``tfseg.export``, or a zoo name (``tfseg.zoo.list()``). ``image``: uint8 RGB [H, W, 3] or an
    image file; a list of them gives a list of label maps (the model is loaded once).
    ``crf``: True (tfseg's CRF parameters; for a zoo name the card's tuned ones), a dict of ``tfseg.layers.DenseCRF`` options or a layer.
    ``num_threads``: TFLite interpreter threads.
    """
    predictor = Predictor(model, crf=crf, num_threads=num_threads)
    if isinstance(image, list):
        return [predictor(_as_image(item))[0] for item in image]
    return predictor(_as_image(image))[0]


def _as_image(image):
    if isinstance(image, (str, Path)):
        return read_image(image)
    return check_image(image)
