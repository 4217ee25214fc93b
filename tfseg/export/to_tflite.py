"""``tfseg.export.tflite``: a TFLite file of builtin ops only, uint8 RGB pixels in, float or quantised.

Conversion goes through a SavedModel of the serving graph (``tf.lite.TFLiteConverter.from_saved_model``;
``from_keras_model`` hides Keras 3 errors) with ``TFLITE_BUILTINS`` only, and the written file is
checked op by op. Quantisation:

- ``"none"``: float32;
- ``"fp16"``: float16 weights, float compute;
- ``"dynamic"``: int8 weights, activations quantised on the fly;
- ``"int8"``: full integer, calibrated on ``representative_data``. The input stays raw uint8 pixels
  (a CAST and a QUANTIZE at the start of the graph; its quantisation parameters are (0, 0)), so the
  file takes the same pixels as every other format, not calibrated quantised values. The output
  softmax alone runs in float, on the dequantised logits (see ``_full_integer_with_float_softmax``).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from tfseg.export.native_log import silenced_native_stderr
from tfseg.export.parity import check_and_report
from tfseg.export.serving import INPUT_NAME, SegmentationServing, check_input_size, image_spec, num_classes, resolve_crf
from tfseg.export.tflite_ops import UnsupportedOpsError, check_builtins_only, converter_error_ops, float_compute_ops

QUANTIZATIONS = ("none", "fp16", "dynamic", "int8")
DEFAULT_CALIBRATION_LIMIT = 100


def tflite(model_or_path, path, *, quantization="none", representative_data=None, calibration_limit=DEFAULT_CALIBRATION_LIMIT,
           input_size=None, crf=None, parity_data=None, parity_limit=None, num_threads=None):
    """Convert a Keras model, a ``.keras`` file or a tfseg SavedModel folder to a TFLite file at ``path``.

    ``input_size``: (height, width) for a fixed-size graph (what delegates want); None keeps the
    model's size, dynamic where the model is (resize the input tensor before allocating).
    The batch size is 1. ``quantization``: one of ``QUANTIZATIONS``; "int8" needs
    ``representative_data``: a folder of images, a dataset split such as ``"camvid:train"``, or
    uint8 RGB arrays, of which the first ``calibration_limit`` are used (resized to
    ``input_size`` when it is fixed). ``crf``: as for ``tfseg.export.saved_model``; the CRF uses its
    TFLite-portable implementation (not with int8: see the error it raises).

    Ops outside the TFLite builtins make it fail with ``UnsupportedOpsError`` naming them. A
    parity report against the Keras model (or the SavedModel) is written beside the file on
    ``parity_data`` (see ``saved_model``), with ``num_threads`` interpreter threads. Returns it.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization={quantization!r}; valid: {list(QUANTIZATIONS)}")
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' (full integer) needs calibration images: pass representative_data= a folder of "
            "images, a dataset split such as 'camvid:train', or uint8 RGB arrays (tfseg export --calibration)"
        )
    if quantization == "int8" and crf not in (None, False):
        raise ValueError(
            "quantization='int8' with crf=: the CRF's lattice arithmetic does not survive int8 (labels agreed with "
            "the float CRF on only 85% of pixels when tried); export int8 without crf= and run the CRF after it "
            "(tfseg.predict(..., crf=True)), or export the CRF in a float file"
        )
    if input_size is not None:
        input_size = check_input_size(input_size)
    path = Path(path)
    serving, reference = _serving_module(model_or_path, crf, input_size)
    spec = _image_spec(serving, input_size)
    calibration = _calibration_images(representative_data, calibration_limit, spec) if quantization == "int8" else None
    content = convert(serving, spec, quantization, calibration)
    check_builtins_only(content, f"the TFLite conversion of {_describe(model_or_path)}")
    if quantization == "int8":
        _check_int8(content)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    from tfseg.inference.runners import TFLiteRunner

    label = "tflite" if quantization == "none" else f"tflite ({quantization})"
    exported = TFLiteRunner(path, num_threads=num_threads)
    return check_and_report(reference, {label: exported}, path, parity_data, parity_limit)


def _describe(model_or_path):
    return str(model_or_path) if isinstance(model_or_path, (str, Path)) else f"model {model_or_path.name!r}"


def _serving_module(model_or_path, crf, input_size):
    """(module with ``serve``, reference runner for parity)."""
    if isinstance(model_or_path, (str, Path)) and Path(model_or_path).is_dir():
        if crf not in (None, False):
            raise ValueError(f"crf= applies when converting a Keras model; the SavedModel {model_or_path} holds what it "
                             "was exported with (export it again with crf=, or convert the .keras file)")
        return _saved_model_module(Path(model_or_path), input_size)
    from tfseg.export.keras_source import as_keras_model
    from tfseg.inference.runners import KerasRunner

    model = as_keras_model(model_or_path)
    labels = num_classes(model)
    reference = KerasRunner(model, crf=resolve_crf(crf, labels))
    serving = SegmentationServing(model, resolve_crf(crf, labels, portable=True), check_inputs=False)
    return serving, reference


def _saved_model_module(path, input_size):
    import tensorflow as tf

    from tfseg.inference.runners import SavedModelRunner

    reference = SavedModelRunner(path)  # checks that tfseg wrote it
    module = tf.Module()
    module.loaded = reference.loaded
    signature = reference.function
    module.serve = tf.function(lambda image: {k: signature(image=image)[k] for k in ("labels", "probabilities")})
    module.fixed_size = reference.input_size
    if input_size is not None and reference.input_size not in (None, input_size):
        raise ValueError(f"input_size={input_size}: the SavedModel {path} is fixed to {reference.input_size}")
    return module, reference


def _image_spec(serving, input_size):
    import tensorflow as tf

    if isinstance(serving, SegmentationServing):
        return image_spec(serving.model, input_size, batch_size=1)
    size = input_size or serving.fixed_size or (None, None)
    return tf.TensorSpec([1, *size, 3], tf.uint8, name=INPUT_NAME)


def _calibration_images(source, limit, spec):
    """uint8 [1, H, W, 3] batches for the converter's representative dataset."""
    import cv2

    from tfseg.inference.sources import load_samples

    samples = load_samples(source, limit)
    if not samples:
        raise ValueError(f"representative_data={source!r} holds no images")
    height, width = spec.shape[1:3]
    batches = []
    for sample in samples:
        image = sample.image
        if height is not None and image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        batches.append(image[None])
    return batches


def convert(serving, spec, quantization="none", calibration=None):
    """TFLite flatbuffer of ``serving.serve`` at ``spec``, builtin ops only; errors name the ops."""
    import tensorflow as tf

    function = serving.serve.get_concrete_function(spec)
    with tempfile.TemporaryDirectory(prefix="tfseg_tflite_") as folder, silenced_native_stderr():
        tf.saved_model.save(serving, folder, signatures={"serving_default": function})
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization in ("fp16", "dynamic", "int8"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            converter.representative_dataset = lambda: ({INPUT_NAME: image} for image in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            with warnings.catch_warnings():  # the calibrator's own use of the deprecated tf.lite.Interpreter
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                if quantization == "int8":
                    return _full_integer_with_float_softmax(converter, calibration)
                return converter.convert()
        except Exception as error:  # ConverterError, and the MLIR's other failures
            ops = converter_error_ops(error)
            if ops:
                raise UnsupportedOpsError(
                    f"the model does not convert to TFLite builtin ops; not supported: {'; '.join(ops)}"
                    + (" (the dense CRF converts with DenseCRF(implementation='portable'))" if any(
                        "Sparse" in op for op in ops) else ""),
                    ops,
                ) from None
            raise


def _full_integer_with_float_softmax(converter, calibration):
    """Full-integer conversion in which the output softmax alone stays float.

    LiteRT's int8 SOFTMAX runs on one thread outside XNNPACK: on DeepLab v3+ MobileNetV2 at 360x480
    it took 5.3 ms of the int8 file's 21 ms, where DEQUANTIZE then XNNPACK's float softmax takes
    about 3 ms (and gives probabilities finer than int8's 1/256 steps). Every other op is int8; the
    labels still come from ARG_MAX on the int8 logits. Uses the quantisation debugger's denylist,
    TF's public way to keep chosen ops in float; the debugger also quantises once with numeric
    checks for its own use (one extra quantisation pass, seconds, at export only).
    """
    import tensorflow as tf

    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["SOFTMAX"], fully_quantize=False)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ({INPUT_NAME: image} for image in calibration[:1]),
        debug_options=options)
    return debugger.get_nondebug_quantized_model()


def _check_int8(content):
    """Full integer: every compute op gives int8."""
    floats = float_compute_ops(content)
    if floats:
        raise ValueError(f"int8 conversion left compute ops in float: {floats}")

