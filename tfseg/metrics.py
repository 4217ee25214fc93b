"""Segmentation scores from a streaming confusion matrix.

The four scores are those of Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic
Segmentation" (CVPR 2015, section 5). With ``n_ij`` the number of pixels of true class ``i``
predicted as class ``j`` and ``t_i = sum_j n_ij``:

- pixel accuracy          ``sum_i n_ii / sum_i t_i``
- mean accuracy           ``(1/n_cl) sum_i n_ii / t_i``
- mean IoU                ``(1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)``
- frequency-weighted IoU  ``(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)``

Conventions (the same as the FCN reference code's ``np.nanmean`` in ``score.py``):

- Pixels whose true label is ``ignore_label`` (void) count nowhere: not in ``t_i``, not as a
  prediction of any class.
- A class absent from both the truth and the predictions has an undefined IoU (0/0); it is left
  out of the mean IoU, i.e. ``n_cl`` counts only the classes that occur. Likewise a class with
  ``t_i = 0`` (never in the truth, possibly predicted) is left out of the mean accuracy; such a
  class still counts in the mean IoU, with IoU 0, when it is predicted.
- Per-class values that are undefined are NaN; a score with no pixel at all to average is NaN.
- A true label other than ``ignore_label`` outside ``[0, num_classes)``, or a predicted integer
  label outside that range on a non-ignored pixel, raises ``tf.errors.InvalidArgumentError``
  (a ``tf.debugging.Assert``; XLA-compiled functions drop asserts, so there such labels are
  counted nowhere instead).
"""

from __future__ import annotations

import keras
import tensorflow as tf

SCORE_NAMES = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")


def _safe_ratio(numerator, denominator):
    """``numerator / denominator`` where the denominator is positive, NaN elsewhere."""
    positive = denominator > 0
    nan = tf.constant(float("nan"), numerator.dtype)
    return tf.where(positive, numerator / tf.where(positive, denominator, tf.ones_like(denominator)), nan)


def _nanmean(values):
    """Mean of the non-NaN entries; NaN when there is none."""
    present = tf.logical_not(tf.math.is_nan(values))
    total = tf.reduce_sum(tf.where(present, values, tf.zeros_like(values)))
    count = tf.reduce_sum(tf.cast(present, values.dtype))
    return _safe_ratio(total, count)


def scores_from_confusion(confusion):
    """The FCN scores of a confusion matrix ``confusion[true, predicted]`` (TF ops only).

    Returns a dict of float64 tensors: ``pixel_accuracy``, ``mean_accuracy``, ``mean_iou``,
    ``frequency_weighted_iou`` (scalars) and ``class_accuracy``, ``iou`` (vectors of length
    ``num_classes``, NaN for undefined classes). See the module docstring for the conventions.
    """
    confusion = tf.cast(tf.convert_to_tensor(confusion), tf.float64)
    correct = tf.linalg.diag_part(confusion)  # n_ii
    true_count = tf.reduce_sum(confusion, axis=1)  # t_i
    predicted_count = tf.reduce_sum(confusion, axis=0)  # sum_j n_ji
    union = true_count + predicted_count - correct
    total = tf.reduce_sum(true_count)

    class_accuracy = _safe_ratio(correct, true_count)
    iou = _safe_ratio(correct, union)
    weighted_iou = tf.where(true_count > 0, true_count * tf.where(union > 0, iou, 0.0), 0.0)
    return {
        "pixel_accuracy": _safe_ratio(tf.reduce_sum(correct), total),
        "mean_accuracy": _nanmean(class_accuracy),
        "mean_iou": _nanmean(iou),
        "frequency_weighted_iou": _safe_ratio(tf.reduce_sum(weighted_iou), total),
        "class_accuracy": class_accuracy,
        "iou": iou,
    }


def _squeeze_trailing_unit_axis(labels, reference_rank):
    """Drop a trailing axis of size 1 when ``labels`` has one axis more than the reference."""
    rank = labels.shape.rank
    if rank is not None and reference_rank is not None and rank == reference_rank + 1 and labels.shape[-1] == 1:
        return tf.squeeze(labels, axis=-1)
    return labels


def _assert_labels_in_range(labels, valid, num_classes, what):
    """Assert that every ``valid`` entry of ``labels`` lies in ``[0, num_classes)``."""
    bad = tf.logical_and(valid, tf.logical_or(labels < 0, labels >= num_classes))
    big = tf.constant(2**31 - 1, labels.dtype)
    return tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [
            f"{what} holds labels outside [0, {num_classes}) on pixels that are not ignored; "
            "smallest and largest offending values:",
            tf.reduce_min(tf.where(bad, labels, big)),
            tf.reduce_max(tf.where(bad, labels, -big)),
        ],
    )


def confusion_matrix(y_true, y_pred, num_classes, ignore_label=None, sample_weight=None, dtype=tf.float64):
    """``[num_classes, num_classes]`` counts ``n[true, predicted]`` of one batch.

    ``y_true``: integer labels ``[B, H, W]`` or ``[B, H, W, 1]`` (any rank works).
    ``y_pred``: logits/probabilities ``[B, H, W, C]`` (floating, last axis ``num_classes``; argmax
    taken) or integer labels of the same shape as ``y_true`` (a trailing axis of 1 is dropped).
    ``sample_weight``: optional per-pixel or per-image weights broadcastable to the labels.
    Pixels whose true label is ``ignore_label`` are not counted.
    """
    y_true = tf.convert_to_tensor(y_true)
    y_pred = tf.convert_to_tensor(y_pred)
    if y_pred.dtype.is_floating and num_classes > 1 and y_pred.shape[-1] == num_classes:
        predicted = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
    else:
        if y_pred.dtype.is_floating:
            y_pred = tf.round(y_pred)
        predicted = tf.cast(y_pred, tf.int32)
    labels = tf.cast(y_true, tf.int32)
    labels = _squeeze_trailing_unit_axis(labels, predicted.shape.rank)
    predicted = _squeeze_trailing_unit_axis(predicted, labels.shape.rank)
    if not labels.shape.is_compatible_with(predicted.shape):
        raise ValueError(
            f"labels of shape {labels.shape} and predictions of shape {predicted.shape} (from y_pred "
            f"{y_pred.shape}) do not match; resize the predictions to the label size first"
        )
    checks = [
        tf.debugging.assert_equal(tf.shape(labels), tf.shape(predicted), message="label/prediction shapes differ")
    ]

    if ignore_label is None:
        valid = tf.ones_like(labels, dtype=tf.bool)
    else:
        valid = tf.not_equal(labels, ignore_label)
    checks.append(_assert_labels_in_range(labels, valid, num_classes, "y_true"))
    checks.append(_assert_labels_in_range(predicted, valid, num_classes, "y_pred"))
    # Out-of-range labels are never counted, whether or not the asserts run (XLA drops them).
    in_range = (labels >= 0) & (labels < num_classes) & (predicted >= 0) & (predicted < num_classes)
    valid = tf.logical_and(valid, in_range)

    weights = tf.cast(valid, dtype)
    if sample_weight is not None:
        sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), dtype)
        sample_weight = _squeeze_trailing_unit_axis(sample_weight, labels.shape.rank)
        while sample_weight.shape.rank is not None and sample_weight.shape.rank < labels.shape.rank:
            sample_weight = tf.expand_dims(sample_weight, -1)
        weights = weights * tf.broadcast_to(sample_weight, tf.shape(labels))

    with tf.control_dependencies(checks):
        flat_index = tf.reshape(tf.where(valid, labels * num_classes + predicted, 0), [-1])
    counts = tf.math.unsorted_segment_sum(tf.reshape(weights, [-1]), flat_index, num_classes * num_classes)
    return tf.reshape(counts, [num_classes, num_classes])


@keras.saving.register_keras_serializable(package="tfseg")
class ConfusionMatrixMetrics(keras.metrics.Metric):
    """Streaming confusion matrix with the FCN scores (pixel/mean accuracy, mean/fw IoU, per-class IoU).

    The matrix is a float64 variable (exact counts up to 2**53 pixels, fractional sample weights
    allowed) with ``aggregation="sum"`` and on-read synchronisation, so under ``tf.distribute``
    each replica counts its own pixels and reading the metric sums the replicas.

    ``result()`` is a dict of scalars, which ``model.compile(metrics=[...])`` accepts (Keras 3
    flattens dict results into the logs): ``pixel_accuracy``, ``mean_accuracy``, ``mean_iou``,
    ``frequency_weighted_iou`` and ``iou_<k>`` for each class ``k``, each prefixed with
    ``key_prefix`` (use it to tell several instances apart, e.g. on a multi-output model).
    ``scores()`` gives the same numbers with the per-class values as vectors.
    """

    def __init__(self, num_classes, ignore_label=None, key_prefix="", name="segmentation_scores", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
        self.num_classes = int(num_classes)
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.key_prefix = key_prefix
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float64",
            aggregation="sum",
            name="confusion_matrix",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        batch = confusion_matrix(
            y_true, y_pred, self.num_classes, self.ignore_label, sample_weight=sample_weight, dtype=tf.float64
        )
        self.confusion.assign_add(batch)

    def scores(self):
        """``scores_from_confusion`` of the accumulated matrix (float64, per-class vectors included)."""
        return scores_from_confusion(self.confusion.value)

    def result(self):
        scores = self.scores()
        out = {f"{self.key_prefix}{key}": tf.cast(scores[key], self.dtype) for key in SCORE_NAMES}
        iou = tf.cast(scores["iou"], self.dtype)
        for k in range(self.num_classes):
            out[f"{self.key_prefix}iou_{k}"] = iou[k]
        return out

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion.value))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, ignore_label=self.ignore_label, key_prefix=self.key_prefix)
        return config
