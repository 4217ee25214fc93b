"""The serving graph that every exported format holds: uint8 RGB pixels in, labels and probabilities out.

``SegmentationServing`` wraps a segmentation model (``image -> logits``, its input scaling inside
as an ``ImagePreprocessing`` layer) and an optional dense CRF, and computes

    pixels (uint8 [B, H, W, 3]) -> float32 -> model -> [DenseCRF(pixels, logits)] ->
    {"labels": argmax (int32 [B, H, W]), "probabilities": softmax (float32 [B, H, W, C])}

SavedModel and TFLite files hold this function, and the parity reference runs it, so pre- and
post-processing are the same in every file; ``tfseg.inference.modes`` feeds any of them.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfseg.layers.dense_crf import DenseCRF
from tfseg.layers.preprocessing import ImagePreprocessing

OUTPUT_NAMES = ("labels", "probabilities")
INPUT_NAME = "image"
IMAGE_CONTRACT = "uint8 RGB pixels [batch, height, width, 3]"


def nested_layers(model):
    """Every layer of ``model``, nested models' layers included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from nested_layers(layer)


def check_segmentation_model(model):
    """Refuse models that cannot serve raw RGB pixels: one RGB input, the input scaling inside."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model; got {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "exports take a model from one image to one logits tensor"
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"model {model.name!r} takes input shape {shape}; exports need RGB images [batch, height, width, 3]")
    out = tuple(model.outputs[0].shape)
    if len(out) != 4 or out[-1] is None:
        raise ValueError(f"model {model.name!r} gives output shape {out}; expected logits [batch, height, width, classes]")
    if not any(isinstance(layer, ImagePreprocessing) for layer in nested_layers(model)):
        raise ValueError(
            f"model {model.name!r} has no ImagePreprocessing layer: exported files take raw uint8 pixels and hold "
            "their own input scaling; build the model with include_preprocessing=True"
        )


def num_classes(model):
    return int(model.outputs[0].shape[-1])


def resolve_crf(crf, labels, portable=False):
    """The ``DenseCRF`` layer for ``crf`` (None/False, True, a dict of DenseCRF options, or a DenseCRF).

    ``True`` means tfseg's parameters (the layer's defaults); a mode ("exact", "fast") is made concrete
    before, by ``tfseg.inference.runners.requested_crf``. ``portable=True`` (TFLite) switches
    the layer to ``implementation="portable"``, keeping any trained weights.
    """
    if crf is None or crf is False:
        return None
    if crf is True:
        layer = DenseCRF(implementation="portable" if portable else "fast", name="dense_crf")
    elif isinstance(crf, dict):
        options = {**crf, **({"implementation": "portable"} if portable else {})}
        try:
            layer = DenseCRF(**options, name="dense_crf")
        except TypeError as error:
            raise TypeError(f"crf={crf!r}: {error}") from None
    elif isinstance(crf, DenseCRF):
        layer = crf
        if portable and crf.implementation != "portable":
            layer = DenseCRF.from_config({**crf.get_config(), "implementation": "portable", "name": "dense_crf"})
            if crf.built:
                _build_crf(layer, labels)
                layer.set_weights(crf.get_weights())
    else:
        raise TypeError(f"crf must be None, True, a dict of DenseCRF options or a tfseg.layers.DenseCRF; got {crf!r}")
    _build_crf(layer, labels)
    return layer


def _build_crf(layer, labels):
    if not layer.built:
        layer.build([(None, None, None, 3), (None, None, None, labels)])


def image_spec(model, input_size=None, batch_size=None):
    """``TensorSpec`` of the uint8 image input: the model's static size, ``input_size`` or any size."""
    _, model_height, model_width, _ = model.inputs[0].shape
    if input_size is None:
        height, width = model_height, model_width
    else:
        height, width = check_input_size(input_size)
        for name, fixed, wanted in (("height", model_height, height), ("width", model_width, width)):
            if fixed is not None and fixed != wanted:
                raise ValueError(f"input_size={tuple(input_size)}: the model is built for {name} {fixed}")
    return tf.TensorSpec([batch_size, height, width, 3], tf.uint8, name=INPUT_NAME)


def check_input_size(input_size):
    """``(height, width)`` of positive ints, or a ValueError naming the argument."""
    try:
        height, width = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width); got {input_size!r}") from None
    if height < 1 or width < 1 or (height, width) != tuple(input_size):
        raise ValueError(f"input_size must be two positive integers (height, width); got {input_size!r}")
    return height, width


class SegmentationServing(tf.Module):
    """``serve(image)``: uint8 RGB [B, H, W, 3] -> {"labels", "probabilities"}, with optional CRF.

    ``check_inputs`` adds a run-time check of the channel count with a readable message
    (SavedModel signatures check the dtype but not the shape); TFLite checks shapes itself.
    """

    def __init__(self, model, crf=None, check_inputs=True):
        super().__init__(name="tfseg_serving")
        check_segmentation_model(model)
        self.model = model
        self.crf = crf
        self.check_inputs = check_inputs
        # Track the underlying tf.Variables: then the TFLite converter freezes them into constants
        # (a tf.Module holding only the Keras model leaves them as resource variables).
        layers = [model] + ([crf] if crf is not None else [])
        self.model_variables = [v.value for layer in layers for v in layer.variables]
        self.serve = tf.function(self.outputs)

    def outputs(self, image):
        """The serving computation (``serve`` is this as a ``tf.function``)."""
        if self.check_inputs:
            image = _checked_image(image)
        pixels = tf.cast(image, tf.float32)
        logits = tf.cast(self.model(pixels, training=False), tf.float32)
        if self.crf is not None:
            logits = tf.cast(self.crf([image, logits], training=False), tf.float32)
        return {
            "labels": tf.argmax(logits, axis=-1, output_type=tf.int32),
            "probabilities": tf.nn.softmax(logits, axis=-1),
        }

    def concrete_function(self, spec):
        return self.serve.get_concrete_function(spec)


def _checked_image(image):
    # Concrete-function signatures check the dtype but not the shape: check the channel count here.
    channels_ok = tf.debugging.assert_equal(
        tf.shape(image)[-1], 3, message=f"the image input must be {IMAGE_CONTRACT}; got another channel count")
    with tf.control_dependencies([channels_ok]):
        return tf.identity(image)
