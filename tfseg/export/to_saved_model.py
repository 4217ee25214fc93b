"""``tfseg.export.saved_model``: a SavedModel whose signature takes uint8 RGB pixels of any size."""

from __future__ import annotations

from pathlib import Path

from tfseg.export.keras_source import as_keras_model
from tfseg.export.parity import check_and_report
from tfseg.export.serving import SegmentationServing, image_spec, num_classes, resolve_crf


def saved_model(model, path, *, crf=None, parity_data=None, parity_limit=None):
    """Export ``model`` (a keras.Model or ``.keras`` file) as a SavedModel folder at ``path``.

    The ``serving_default`` signature takes ``image``: uint8 RGB [batch, height, width, 3] (any
    size unless the model was built for a fixed one), applies the model's own input scaling, and
    returns ``labels`` (int32 [B, H, W]) and ``probabilities`` (float32 [B, H, W, C]). ``crf``:
    True (tfseg's CRF parameters), a dict of ``tfseg.layers.DenseCRF`` options or a ``DenseCRF``
    layer; the dense CRF then runs inside. The folder loads with ``tf.saved_model.load`` alone.

    A parity report against the Keras model (``<path>.parity.json`` / ``.parity.txt``) is written
    beside it, on ``parity_data`` (a folder, a dataset split such as ``"camvid:val"``, arrays; by
    default a few synthetic images), the first ``parity_limit`` of them. Returns the report.
    """
    import tensorflow as tf

    from tfseg.inference.runners import KerasRunner, SavedModelRunner

    model = as_keras_model(model)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder; a SavedModel is a folder")
    crf_layer = resolve_crf(crf, num_classes(model))
    serving = SegmentationServing(model, crf_layer)
    function = serving.concrete_function(image_spec(model))
    tf.saved_model.save(serving, str(path), signatures={"serving_default": function})
    reference = KerasRunner(model, crf=crf_layer)
    return check_and_report(reference, {"saved_model": SavedModelRunner(path)}, path, parity_data, parity_limit)
