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

from tfseg.export.parity import check_and_report, export_crf, exported_info
from tfseg.export.tflite_ops import UnsupportedOpsError, check_builtins_only, converter_error_ops, float_compute_ops
from tfseg.files import write_bytes
from tfseg.inference.metadata import read_saved_model_info, with_tflite_info
from tfseg.inference.native_log import silenced_native_stderr
from tfseg.inference.serving import INPUT_NAME, SegmentationServing, check_input_size, image_spec, num_classes, resolve_crf
from tfseg.inference.sources import count_samples

QUANTIZATIONS = ("none", "fp16", "dynamic", "int8")
DEFAULT_CALIBRATION_LIMIT = 100
CALIBRATION_SEED = 0


def tflite(model_or_path, path, *, quantization="none", representative_data=None, calibration_limit=DEFAULT_CALIBRATION_LIMIT,
           input_size=None, crf=None, parity_data=None, parity_limit=None, num_threads=None, info=None, progress=None):
    """Convert a Keras model, a ``.keras`` file, a zoo name or a tfseg SavedModel folder to a TFLite file at ``path``.

    ``input_size``: (height, width) for a fixed-size graph (what delegates want); None keeps the
    model's size, dynamic where the model is (resize the input tensor before allocating), except
    for a model whose input protocol pads to a canvas (the official DeepLab cards): its file is
    fixed to the canvas. The batch size is 1. ``quantization``: one of ``QUANTIZATIONS``; "int8"
    needs ``representative_data``: a folder of images, a dataset split such as ``"camvid:train"``,
    or uint8 RGB arrays, of which ``calibration_limit`` are used: for a split, a seeded sample spread
    over it (named in the parity report), else the first ones; each is fitted to a fixed input
    size as the model's protocol feeds it (padded to the canvas, or resized). ``crf``: as for
    ``tfseg.export.saved_model``; the CRF uses its TFLite-portable implementation (not with int8:
    see the error it raises). The file carries the model's ``ModelInfo`` (``info``, default the
    model's own) as metadata.

    Ops outside the TFLite builtins make it fail with ``UnsupportedOpsError`` naming them. A
    parity report against the Keras model (or the SavedModel) is written beside the file on
    ``parity_data`` (see ``saved_model``), with ``num_threads`` interpreter threads. Returns it.
    ``progress``: called with a short text before each stage.
    """
    from tfseg.inference.runners import TFLiteRunner, check_threads

    say = progress or (lambda text: None)
    check_threads(num_threads)
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
    say("loading the model")
    serving, model, crf_layer, file_info = _serving_module(model_or_path, crf, input_size, info)
    if input_size is None and file_info.protocol.canvas is not None and getattr(serving, "fixed_size", None) is None:
        input_size = file_info.protocol.canvas
    spec = _image_spec(serving, input_size)
    calibration, calibration_record = None, None
    if quantization == "int8":
        say(f"reading {count_samples(representative_data, calibration_limit, sample_seed=CALIBRATION_SEED)} "
            f"calibration images from {representative_data}")
        calibration, calibration_record = _calibration_images(representative_data, calibration_limit, spec,
                                                              file_info.protocol)
    say(f"converting to TFLite ({quantization})" + (", calibrating int8" if quantization == "int8" else ""))

    def calibrated(done):
        if done % 10 == 0 or done == len(calibration):
            say(f"calibrating int8: {done} of {len(calibration)} images")

    content = convert(serving, spec, quantization, calibration, on_calibration_image=calibrated)
    check_builtins_only(content, f"the TFLite conversion of {_describe(model_or_path)}")
    if quantization == "int8":
        _check_int8(content)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, with_tflite_info(content, file_info))
    label = "tflite" if quantization == "none" else f"tflite ({quantization})"
    say("checking parity with the Keras model")
    exported = TFLiteRunner(path, num_threads=num_threads)
    return check_and_report(model, crf_layer, {label: exported}, path, parity_data, parity_limit,
                            calibration=calibration_record)


def _describe(model_or_path):
    return str(model_or_path) if isinstance(model_or_path, (str, Path)) else f"model {model_or_path.name!r}"


def _serving_module(model_or_path, crf, input_size, info):
    """(module with ``serve``, reference model (Keras model or SavedModel runner), its CRF layer, the file's info)."""
    if isinstance(model_or_path, (str, Path)) and Path(model_or_path).is_dir():
        if crf not in (None, False):
            raise ValueError(f"crf= applies when converting a Keras model; the SavedModel {model_or_path} holds what it "
                             "was exported with (export it again with crf=, or convert the .keras file)")
        held = read_saved_model_info(model_or_path)
        if held is not None and held.crf:
            raise ValueError(
                f"the SavedModel {model_or_path} holds a dense CRF, which converts to TFLite only from the Keras model "
                "(its TFLite-portable form): convert the .keras file with --crf instead"
            )
        module, reference = _saved_model_module(Path(model_or_path), input_size)
        return module, reference, None, info or reference.info
    from tfseg.inference.models import as_keras_model

    model = as_keras_model(model_or_path)
    labels = num_classes(model)
    crf = export_crf(model, crf)
    reference_crf = resolve_crf(crf, labels)
    portable = resolve_crf(crf, labels, portable=True)
    serving = SegmentationServing(model, portable, check_inputs=False)
    return serving, model, reference_crf, exported_info(model, info, portable)


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


def _calibration_images(source, limit, spec, protocol):
    """uint8 [1, H, W, 3] batches for the converter's representative dataset, and their record for the report."""
    from tfseg.inference.sources import describe, load_samples

    samples = load_samples(source, limit, sample_seed=CALIBRATION_SEED)
    if not samples:
        raise ValueError(f"representative_data={source!r} holds no images")
    size = tuple(spec.shape[1:3])
    batches = [fit_to_input(sample.image, size, protocol)[None] for sample in samples]
    record = {"source": describe(source, limit, CALIBRATION_SEED), "count": len(samples),
              "images": [sample.name for sample in samples]}
    return batches, record


def fit_to_input(image, size, protocol):
    """``image`` as a fixed-size graph of ``size`` sees it: through the protocol onto its canvas when the
    canvas is that size (rounded to uint8), else resized as inference resizes (``resized_pixels``);
    unchanged when the size is dynamic."""
    import numpy as np
    import tensorflow as tf

    from tfseg.inference.modes import official_resized_size, pad_to_at_least, resize_align_corners, resized_pixels

    height, width = size
    if height is None or image.shape[:2] == (height, width):
        return image
    if protocol.canvas is not None and tuple(protocol.canvas) == (height, width):
        pixels = tf.constant(image[None], tf.float32)
        if protocol.resize is not None:
            pixels = resize_align_corners(pixels, official_resized_size(*image.shape[:2], *protocol.resize))
        if pixels.shape[1] <= height and pixels.shape[2] <= width:
            canvas = pad_to_at_least(pixels, (height, width), protocol.pad_value)[0].numpy()
            return np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return resized_pixels(image, (height, width))


def convert(serving, spec, quantization="none", calibration=None, on_calibration_image=None):
    """TFLite flatbuffer of ``serving.serve`` at ``spec``, builtin ops only; errors name the ops.

    ``on_calibration_image``: called with the count of calibration images the converter has taken.
    """
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
            converter.representative_dataset = lambda: _counted(calibration, on_calibration_image)
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


def _counted(calibration, on_image):
    for done, image in enumerate(calibration, 1):
        yield {INPUT_NAME: image}
        if on_image is not None:
            on_image(done)


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

