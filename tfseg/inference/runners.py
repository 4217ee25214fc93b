"""One calling convention for every model format: uint8 RGB [1, H, W, 3] -> (labels, probabilities).

``load_runner(model)`` accepts a ``keras.Model``, a ``.keras`` file, a SavedModel folder written by
``tfseg.export.saved_model`` or a ``.tflite`` file written by ``tfseg.export.tflite``. Each runner
has ``format``, ``input_size`` ((H, W) when the graph is fixed-size, else None), ``num_classes``
and ``__call__(batch) -> (labels int32 [B, H, W], probabilities float32 [B, H, W, C])``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfseg.export.serving import INPUT_NAME, OUTPUT_NAMES

KERAS_SUFFIXES = (".keras",)
TFLITE_SUFFIXES = (".tflite",)


class KerasRunner:
    """A Keras model (with an optional CRF) through the same serving function as the exports."""

    format = "keras"

    def __init__(self, model, crf=None):
        import tensorflow as tf

        from tfseg.export.serving import SegmentationServing, image_spec, num_classes, resolve_crf

        self.num_classes = num_classes(model) if getattr(model, "outputs", None) else None
        self.serving = SegmentationServing(model, resolve_crf(crf, self.num_classes), check_inputs=False)
        spec = image_spec(model)
        self.input_size = tuple(spec.shape[1:3]) if None not in spec.shape[1:3] else None
        self._function = self.serving.concrete_function(spec)
        self._tf = tf
        self.name = model.name

    def __call__(self, batch):
        outputs = self._function(self._tf.constant(_check_batch(batch)))
        return outputs["labels"].numpy(), outputs["probabilities"].numpy()


class SavedModelRunner:
    """The ``serving_default`` signature of a SavedModel folder exported by tfseg."""

    format = "saved_model"

    def __init__(self, path):
        import tensorflow as tf

        self.name = str(path)
        loaded = tf.saved_model.load(str(path))
        if "serving_default" not in loaded.signatures:
            raise ValueError(f"SavedModel {path} has no 'serving_default' signature; export it with tfseg.export.saved_model")
        function = loaded.signatures["serving_default"]
        _, inputs = function.structured_input_signature
        spec = inputs.get(INPUT_NAME)
        if spec is None or spec.dtype != tf.uint8 or len(inputs) != 1:
            raise ValueError(
                f"SavedModel {path} was not exported by tfseg: its signature takes {dict(inputs)}, "
                f"not one uint8 '{INPUT_NAME}' input"
            )
        missing = set(OUTPUT_NAMES) - set(function.structured_outputs)
        if missing:
            raise ValueError(f"SavedModel {path} was not exported by tfseg: its signature lacks outputs {sorted(missing)}")
        height, width = spec.shape[1:3]
        self.input_size = (height, width) if height is not None and width is not None else None
        self.num_classes = function.structured_outputs["probabilities"].shape[-1]
        self.loaded, self.function, self._tf = loaded, function, tf

    def __call__(self, batch):
        outputs = self.function(**{INPUT_NAME: self._tf.constant(_check_batch(batch))})
        return outputs["labels"].numpy(), outputs["probabilities"].numpy()


class TFLiteRunner:
    """A ``.tflite`` file exported by tfseg, in the LiteRT interpreter (XNNPACK on CPU)."""

    format = "tflite"

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        from tfseg.export.native_log import silenced_native_stderr

        self.name = str(path)
        try:
            with silenced_native_stderr():
                self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"cannot load TFLite file {path}: {error}") from None
        signatures = self.interpreter.get_signature_list()
        if len(signatures) != 1:
            raise ValueError(f"TFLite file {path} was not exported by tfseg: signatures {sorted(signatures)}")
        key = next(iter(signatures))
        if sorted(signatures[key]["inputs"]) != [INPUT_NAME] or not set(OUTPUT_NAMES) <= set(signatures[key]["outputs"]):
            raise ValueError(f"TFLite file {path} was not exported by tfseg: its signature is {signatures[key]}")
        self._runner = self.interpreter.get_signature_runner(key)
        detail = self._runner.get_input_details()[INPUT_NAME]
        self.input_dtype = detail["dtype"]
        self.input_quantization = detail["quantization"]
        shape = detail["shape_signature"]
        self.input_size = None if min(shape[1:3]) < 0 else (int(shape[1]), int(shape[2]))
        self.num_classes = int(self._runner.get_output_details()["probabilities"]["shape_signature"][-1])

    def __call__(self, batch):
        batch = _check_batch(batch)
        if self.input_size is not None and tuple(batch.shape[1:3]) != self.input_size:
            raise ValueError(f"TFLite file {self.name} takes {self.input_size[0]}x{self.input_size[1]} images; "
                             f"got {batch.shape[1]}x{batch.shape[2]}")
        outputs = self._runner(**{INPUT_NAME: quantize_input(batch, self.input_dtype, self.input_quantization)})
        return outputs["labels"], outputs["probabilities"].astype(np.float32, copy=False)


def quantize_input(pixels, dtype, quantization):
    """Pixels as the input tensor means them: raw uint8 (scale 0), quantised values, or floats."""
    scale, zero_point = quantization
    if dtype == np.float32:
        return pixels.astype(np.float32)
    if scale == 0:
        return pixels.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(pixels / scale + zero_point), info.min, info.max).astype(dtype)


def _check_batch(batch):
    batch = np.asarray(batch)
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB pixels [batch, height, width, 3]; got {batch.dtype} {batch.shape}")
    return batch


def load_runner(model, crf=None, num_threads=None):
    """A runner for ``model``: a keras.Model, a .keras file, a SavedModel folder, a .tflite file or a zoo name.

    ``crf`` applies to Keras models (the CRF joins the serving graph); exported files hold their own.
    """
    import keras

    if isinstance(model, keras.Model):
        return KerasRunner(model, crf=crf)
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a keras.Model, a path or a zoo name; got {type(model).__name__}")
    path = Path(model)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ValueError(f"folder {path} is not a SavedModel (no saved_model.pb in it)")
        return SavedModelRunner(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in KERAS_SUFFIXES:
            return KerasRunner(load_keras_model(path), crf=crf)
        if suffix in TFLITE_SUFFIXES:
            return TFLiteRunner(path, num_threads=num_threads)
        raise ValueError(f"model file {path}: unknown format {suffix!r}; expected .keras, .tflite or a SavedModel folder")
    return zoo_runner(str(model), crf=crf)


def load_keras_model(path):
    import keras

    import tfseg  # noqa: F401  (registers tfseg's layers for deserialisation)

    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as error:  # Keras raises many kinds here (bad zip, unknown layer, config errors)
        raise ValueError(f"cannot load Keras model {path}: {type(error).__name__}: {error}") from error


def zoo_runner(name, crf=None):
    """A zoo name: the card's model with its pretrained weights; ``crf=True`` takes the card's tuned CRF."""
    from tfseg import zoo

    name = name[len("zoo:"):] if name.startswith("zoo:") else name
    if name not in zoo.list():
        raise ValueError(
            f"unknown model {name!r}: not a .keras file, a SavedModel folder, a .tflite file or a zoo name "
            f"(zoo: {', '.join(zoo.list())})"
        )
    if crf is True and zoo.card(name).crf:
        crf = zoo.card(name).crf
    return KerasRunner(zoo.load(name), crf=crf)
