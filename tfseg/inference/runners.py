"""One runner per model format, with one interface for the inference modes (``tfseg.inference.modes``).

``load_runner(model)`` accepts a ``keras.Model``, a ``.keras`` file, a zoo name, a SavedModel folder
written by ``tfseg.export.saved_model`` or a ``.tflite`` file written by ``tfseg.export.tflite``.
Every runner has:

- ``format``, ``name``, ``num_classes``, ``input_size`` ((H, W) of a fixed-size graph, else None)
  and ``info`` (the ``ModelInfo`` it carries: classes, palette, input protocol, a CRF inside);
- ``logits(pixels)``: float RGB ``[B, h, w, 3]`` -> logits ``[B, h, w, C]``. A Keras model takes the
  floats as they are (traceable: ``traceable`` is True); an exported file takes uint8, so the pixels
  are rounded, and gives log-probabilities (logits up to a per-pixel constant);
- ``__call__(batch)``: uint8 RGB ``[B, H, W, 3]`` -> ``(labels int32 [B, H, W], probabilities
  float32 [B, H, W, C])`` through the serving graph (``tfseg.inference.serving``), as the exports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfseg.catalogue import catalogue
from tfseg.inference.metadata import ModelInfo, info_of, read_saved_model_info, read_tflite_info
from tfseg.inference.models import load_keras_model, load_zoo_model, use_tensorflow_threads, zoo_name
from tfseg.inference.serving import INPUT_NAME, OUTPUT_NAMES

KERAS_SUFFIXES = (".keras",)
TFLITE_SUFFIXES = (".tflite",)


def check_threads(num_threads):
    """``num_threads``: None or a positive int (TFLite interpreter threads), else a ValueError."""
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"num_threads (--threads) must be a positive integer; got {num_threads!r}")
    return int(num_threads)


class KerasRunner:
    """A Keras model: its own graph for ``logits``, the serving graph (as the exports hold it) for ``__call__``."""

    format = "keras"
    traceable = True

    def __init__(self, model, info=None):
        self.model = model
        self.name = model.name
        self.num_classes = int(model.outputs[0].shape[-1])
        height, width = model.inputs[0].shape[1:3]
        self.input_size = (int(height), int(width)) if height is not None and width is not None else None
        self.info = info or info_of(model) or ModelInfo()
        self._function = None

    def logits(self, pixels):
        import tensorflow as tf

        return tf.cast(self.model(pixels, training=False), tf.float32)

    def __call__(self, batch):
        import tensorflow as tf

        if self._function is None:
            from tfseg.inference.serving import SegmentationServing, image_spec

            serving = SegmentationServing(self.model, check_inputs=False)
            self._function = serving.concrete_function(image_spec(self.model))
        outputs = self._function(tf.constant(_check_batch(batch)))
        return outputs["labels"].numpy(), outputs["probabilities"].numpy()


class _FileRunner:
    """``logits`` of an exported file: rounded uint8 pixels in, log-probabilities out, one image at a time."""

    traceable = False

    def logits(self, pixels):
        import tensorflow as tf

        pixels = np.asarray(pixels)
        if self.input_size is not None and tuple(pixels.shape[1:3]) != self.input_size:
            raise ValueError(f"{self.name} takes {self.input_size[0]}x{self.input_size[1]} images; "
                             f"got {pixels.shape[1]}x{pixels.shape[2]}")
        batch = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
        probabilities = np.concatenate([self(batch[i : i + 1])[1] for i in range(len(batch))])
        return tf.math.log(tf.maximum(tf.constant(probabilities, tf.float32), 1e-30))


class SavedModelRunner(_FileRunner):
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
        self.info = read_saved_model_info(path) or ModelInfo()
        self.loaded, self.function, self._tf = loaded, function, tf

    def __call__(self, batch):
        outputs = self.function(**{INPUT_NAME: self._tf.constant(_check_batch(batch))})
        return outputs["labels"].numpy(), outputs["probabilities"].numpy()


class TFLiteRunner(_FileRunner):
    """A ``.tflite`` file exported by tfseg, in the LiteRT interpreter (XNNPACK on CPU)."""

    format = "tflite"

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        from tfseg.inference.native_log import silenced_native_stderr

        self.name = str(path)
        content = Path(path).read_bytes()
        try:
            with silenced_native_stderr():
                self.interpreter = Interpreter(model_content=content, num_threads=check_threads(num_threads))
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
        self.info = read_tflite_info(content, str(path)) or ModelInfo()

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


def load_runner(model, num_threads=None):
    """A runner for ``model``: a keras.Model, a .keras file, a SavedModel folder, a .tflite file or a zoo name.

    The dense CRF is not a runner's: ``Predictor(crf=)`` refines once, after the inference mode (an
    exported file may hold one of its own). ``num_threads``: TFLite interpreter threads; for the other
    formats TensorFlow's thread pools (:func:`~tfseg.inference.models.use_tensorflow_threads`).
    """
    import keras

    check_threads(num_threads)
    if isinstance(model, (KerasRunner, _FileRunner)):
        return model
    if num_threads is not None and not (isinstance(model, (str, Path)) and Path(model).suffix.lower() in TFLITE_SUFFIXES):
        use_tensorflow_threads(num_threads)  # Keras and SavedModel models run in TensorFlow's thread pools
    if isinstance(model, keras.Model):
        return KerasRunner(model)
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
            return KerasRunner(load_keras_model(path))
        if suffix in TFLITE_SUFFIXES:
            return TFLiteRunner(path, num_threads=num_threads)
        raise ValueError(f"model file {path}: unknown format {suffix!r}; expected .keras, .tflite or a SavedModel folder")
    name = zoo_name(model)
    if name is None:
        raise ValueError(
            f"unknown model {str(model)!r}: not a .keras file, a SavedModel folder, a .tflite file or a zoo name "
            f"(zoo: {', '.join(catalogue().list())})"
        )
    return KerasRunner(load_zoo_model(name))


def requested_crf(crf, info):
    """``crf`` with a mode made concrete: ``"exact"`` or ``"fast"`` (``True``: "exact") become the zoo card's
    tuned options of that mode for a zoo model (``info.source``), else tfseg's; other values pass through."""
    from tfseg.layers.dense_crf import crf_mode_options

    if crf is True:
        crf = "exact"
    if not isinstance(crf, str):
        return crf
    defaults = crf_mode_options(crf)  # a bad mode is refused here, naming the valid ones
    if info is not None and info.source.startswith("zoo:"):
        return catalogue().card(info.source.removeprefix("zoo:")).crf_options(crf)
    return defaults
