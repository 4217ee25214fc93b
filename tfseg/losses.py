"""Segmentation losses."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfseg.metrics import _assert_labels_in_range, _squeeze_trailing_unit_axis


def global_sum(value):
    """``value`` summed over the replicas of the ``tf.distribute`` strategy (itself outside a replica context)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


@keras.saving.register_keras_serializable(package="tfseg")
class SparseCrossEntropyWithIgnore(keras.losses.Loss):
    """Per-pixel softmax cross-entropy averaged over the pixels that are not ``ignore_label``.

    ``loss = sum_p w_p * ce_p / sum_p w_p`` over the non-ignored pixels ``p`` of the global batch, with
    ``w_p = class_weights[y_p]`` (1 without class weights) times the Keras ``sample_weight`` of
    the pixel when one is given. This is PyTorch's ``CrossEntropyLoss(weight=...,
    ignore_index=..., reduction='mean')``. A batch whose pixels are all ignored gives 0, not NaN.

    ``y_true``: integer labels ``[B, H, W]`` or ``[B, H, W, 1]``; ``y_pred``: ``[B, H, W, C]``
    logits (``from_logits=True``) or probabilities. A label other than ``ignore_label`` outside
    ``[0, C)`` raises ``tf.errors.InvalidArgumentError``.

    ``label_smoothing`` ``e``: the target puts ``1 - e`` on the true class and spreads ``e``
    uniformly over all ``C`` classes (Szegedy et al. 2016), as ``keras.losses.CategoricalCrossentropy``.

    ``reduction``: ``"sum_over_batch_size"`` (default; the weighted mean above, also spelled
    ``"mean"``), ``"sum"`` (``sum_p w_p ce_p``) or ``"none"`` (the map ``w_p ce_p``, 0 on ignored
    pixels). The mean reductions are replica-independent: under ``tf.distribute`` each replica
    divides its weighted sum by the global ``sum_p w_p``, all-reduced across replicas, and Keras
    sums the replicas' gradients, so
    one device and N replicas compute the same gradient for the same global batch, however the
    ignored pixels are spread. (The official DeepLab code and mmsegmentation average per replica.)
    """

    def __init__(
        self,
        ignore_label=None,
        class_weights=None,
        from_logits=True,
        reduction="sum_over_batch_size",
        name="sparse_cross_entropy_with_ignore",
        dtype=None,
        label_smoothing=0.0,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing!r}: expected 0 <= value < 1")
        self.label_smoothing = float(label_smoothing)
        self.ignore_label = None if ignore_label is None else int(ignore_label)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.from_logits = bool(from_logits)

    def _pixel_losses_and_weights(self, y_true, y_pred, sample_weight=None):
        """``(ce, weight)`` maps of shape ``[B, H, W]``; ignored pixels have weight 0 (and ce 0)."""
        y_pred = tf.cast(tf.convert_to_tensor(y_pred), self.dtype)
        labels = tf.cast(tf.convert_to_tensor(y_true), tf.int32)
        labels = _squeeze_trailing_unit_axis(labels, y_pred.shape.rank - 1)
        num_classes = y_pred.shape[-1]
        if num_classes is None:
            raise ValueError(f"the class axis of y_pred {y_pred.shape} must be known")
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(f"{len(self.class_weights)} class weights given for {num_classes} classes")

        valid = tf.ones_like(labels, tf.bool) if self.ignore_label is None else tf.not_equal(labels, self.ignore_label)
        check = _assert_labels_in_range(labels, valid, num_classes, "y_true")
        with tf.control_dependencies([check]):
            safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
        if self.from_logits:
            log_probabilities = tf.nn.log_softmax(y_pred)
        else:
            probabilities = y_pred / tf.reduce_sum(y_pred, axis=-1, keepdims=True)
            epsilon = keras.config.epsilon()
            log_probabilities = tf.math.log(tf.clip_by_value(probabilities, epsilon, 1.0 - epsilon))
        ce = -tf.gather(log_probabilities, safe_labels, batch_dims=labels.shape.rank)
        if self.label_smoothing:
            uniform = -tf.reduce_mean(log_probabilities, axis=-1)
            ce = (1.0 - self.label_smoothing) * ce + self.label_smoothing * uniform

        weight = tf.cast(valid, self.dtype)
        if self.class_weights is not None:
            weight = weight * tf.gather(tf.constant(self.class_weights, self.dtype), safe_labels)
        if sample_weight is not None:
            sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), self.dtype)
            sample_weight = _squeeze_trailing_unit_axis(sample_weight, labels.shape.rank)
            while sample_weight.shape.rank < labels.shape.rank:
                sample_weight = tf.expand_dims(sample_weight, -1)
            weight = weight * tf.broadcast_to(sample_weight, tf.shape(labels))
        return tf.where(valid, ce, tf.zeros_like(ce)), weight

    def call(self, y_true, y_pred):
        ce, weight = self._pixel_losses_and_weights(y_true, y_pred)
        return ce * weight

    def __call__(self, y_true, y_pred, sample_weight=None):
        with tf.name_scope(self.name):
            ce, weight = self._pixel_losses_and_weights(y_true, y_pred, sample_weight)
            weighted = ce * weight
            if self.reduction in (None, "none"):
                return weighted
            total = tf.reduce_sum(weighted)
            if self.reduction == "sum":
                return total
            return tf.math.divide_no_nan(total, global_sum(tf.stop_gradient(tf.reduce_sum(weight))))

    def get_config(self):
        config = super().get_config()
        config.update(
            ignore_label=self.ignore_label, class_weights=self.class_weights, from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
        )
        return config
