"""``tfseg.predict`` and ``Predictor``: an image's label map for any model format, by any inference mode.

Every format goes through the same steps (``tfseg.inference.modes``): the model's input protocol
(the card's, carried by exported files), the mode (whole image, multi-scale + flip, sliding
window), then optionally the dense CRF on the probabilities at the image's size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfseg.inference.modes import InferenceOptions, check_crf_inside, check_fixed_size, probabilities, refine_with_crf
from tfseg.inference.runners import load_runner, requested_crf
from tfseg.inference.sources import check_image, read_image


class Predictor:
    """``predictor(image) -> (labels int32 [H, W], probabilities float32 [H, W, C])`` for one model.

    ``model``: anything ``load_runner`` takes. ``crf``: None, "fast" or "exact" (the zoo card's
    tuned options of that mode, else tfseg's; True: "exact"), a dict of ``tfseg.layers.DenseCRF``
    options or a ``DenseCRF``; it refines once, after the inference mode. Refused for a file that
    already holds a CRF, and such a file refuses the modes its CRF cannot honour (see
    ``check_crf_inside``). ``options``: ``InferenceOptions`` (or pass
    ``scales``, ``flip``, ``window``, ``window_stride``, ``protocol`` as keywords).
    ``num_threads``: TFLite interpreter threads.
    """

    def __init__(self, model, *, crf=None, options=None, num_threads=None, **inference):
        import tensorflow as tf

        from tfseg.inference.serving import resolve_crf

        if options is not None and inference:
            raise TypeError("pass either options= or the inference keywords, not both")
        self.options = options or InferenceOptions(**inference)
        self.runner = load_runner(model, num_threads=num_threads)
        self.info = self.runner.info
        self.protocol = self.options.protocol or self.info.protocol
        self.crf_layer = None
        if self.info.crf is not None:
            check_crf_inside(self.runner.name, self.options, self.protocol)
        if crf not in (None, False):
            if self.info.crf is not None:
                raise ValueError(f"{self.runner.name} already holds a dense CRF ({self.info.crf}); a second CRF would "
                                 "refine its output again: predict without crf (--crf)")
            self.crf_layer = resolve_crf(requested_crf(crf, self.info), self.num_classes)
        compiled = self.runner.traceable and self.runner.input_size is None
        refine = lambda pixels, probs: refine_with_crf(self.crf_layer, pixels, probs)  # noqa: E731
        # A traced Keras model runs the CRF in its graph; a file's eager output gets it as a tf.function.
        self._refine = refine if compiled else tf.function(refine, reduce_retracing=True)
        self._function = self.tensor_probabilities
        if compiled:
            self._function = tf.function(self.tensor_probabilities, reduce_retracing=True,
                                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])

    @property
    def num_classes(self):
        return self.runner.num_classes

    def tensor_probabilities(self, pixels):
        """Probabilities ``[B, H, W, C]`` of uint8 RGB ``pixels`` ``[B, H, W, 3]`` (TF ops; traceable for Keras)."""
        import tensorflow as tf

        result = probabilities(self.runner.logits, tf.cast(pixels, tf.float32), self.num_classes, self.options,
                               self.protocol, fixed_size=self.runner.input_size)
        if self.crf_layer is not None:
            result = self._refine(pixels, result)
        return result

    def __call__(self, image):
        image = check_image(image)
        check_fixed_size(self.runner.input_size, self.options, self.protocol, image.shape[:2], self.runner.name)
        result = np.asarray(self._function(image[None]))[0]
        return result.argmax(-1).astype(np.int32), result


def predict(model, image, *, crf=None, num_threads=None, **inference):
    """The label map (int32 [H, W]) of ``image`` under ``model``.

    ``model``: a keras.Model, a ``.keras`` file, a SavedModel folder or ``.tflite`` file exported
    by ``tfseg.export``, or a zoo name (``tfseg.zoo.list()``). ``image``: uint8 RGB [H, W, 3] or an
    image file; a list of them gives a list of label maps (the model is loaded once).
    ``crf``: True (tfseg's CRF parameters; for a zoo name the card's tuned ones), a dict of
    ``tfseg.layers.DenseCRF`` options or a layer. ``inference``: ``scales``, ``flip``, ``window``,
    ``window_stride``, ``protocol`` (``tfseg.inference.modes.InferenceOptions``); the model's own
    input protocol (its card's, or the one its file carries) applies unless ``protocol`` is given.
    ``num_threads``: TFLite interpreter threads.
    """
    predictor = Predictor(model, crf=crf, num_threads=num_threads, **inference)
    if isinstance(image, list):
        return [predictor(_as_image(item))[0] for item in image]
    return predictor(_as_image(image))[0]


def _as_image(image):
    if isinstance(image, (str, Path)):
        return read_image(image)
    return check_image(image)
