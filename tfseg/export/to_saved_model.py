"""``tfseg.export.saved_model``: a SavedModel whose signature takes uint8 RGB pixels of any size."""

from __future__ import annotations

from pathlib import Path

from tfseg.export.parity import check_and_report, exported_info, export_crf
from tfseg.files import replacing
from tfseg.inference.metadata import write_saved_model_info
from tfseg.inference.models import as_keras_model
from tfseg.inference.serving import SegmentationServing, image_spec, num_classes, resolve_crf


def saved_model(model, path, *, crf=None, parity_data=None, parity_limit=None, info=None, progress=None):
    """Export ``model`` (a keras.Model, a ``.keras`` file or a zoo name) as a SavedModel folder at ``path``.

    The ``serving_default`` signature takes ``image``: uint8 RGB [batch, height, width, 3] (any
    size unless the model was built for a fixed one), applies the model's own input scaling, and
    returns ``labels`` (int32 [B, H, W]) and ``probabilities`` (float32 [B, H, W, C]). ``crf``:
    True (tfseg's CRF parameters; a zoo model's tuned ones), a dict of ``tfseg.layers.DenseCRF``
    options or a ``DenseCRF`` layer; the dense CRF then runs inside. The folder loads with
    ``tf.saved_model.load`` alone; ``assets.extra/tfseg_info.json`` carries the model's
    ``ModelInfo`` (``info``, default the model's own: classes, palette, input protocol, the CRF).

    A parity report against the Keras model (``<path>.parity.json`` / ``.parity.txt``) is written
    beside it, on ``parity_data`` (a folder, a dataset split such as ``"voc:val"``, arrays; by
    default a few synthetic images), the first ``parity_limit`` of them. Returns the report.
    ``progress``: called with a short text before each stage.
    """
    import tensorflow as tf

    from tfseg.inference.runners import SavedModelRunner

    say = progress or (lambda text: None)
    say("loading the model")
    model = as_keras_model(model)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder; a SavedModel is a folder")
    crf = export_crf(model, crf)
    crf_layer = resolve_crf(crf, num_classes(model))
    serving = SegmentationServing(model, crf_layer)
    function = serving.concrete_function(image_spec(model))
    say("writing the SavedModel")
    with replacing(path) as folder:  # renamed into place whole
        tf.saved_model.save(serving, str(folder), signatures={"serving_default": function})
        write_saved_model_info(folder, exported_info(model, info, crf_layer))
    say("checking parity with the Keras model")
    return check_and_report(model, crf_layer, {"saved_model": SavedModelRunner(path)}, path, parity_data, parity_limit)
