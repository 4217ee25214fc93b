"""Evaluation as the papers do it: whole image, multi-scale + flip, or sliding window; optional CRF.

Multi-scale inference follows the official DeepLab ``predict_labels_multi_scale``: the image is
resized to each scale, the model's softmax is resized back to the image's size and averaged over
scales (and their left-right flips). Scores come from one confusion matrix summed exactly over
every pixel of the split (``tfseg.metrics``), across ``tf.distribute`` replicas when a strategy
is given; the last partial batch is counted like any other.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow as tf

from tfseg.metrics import SCORE_NAMES, confusion_matrix, scores_from_confusion

DEEPLAB_EVAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _softmax_at(model, images, size):
    logits = model(images, training=False)
    logits = tf.image.resize(tf.cast(logits, tf.float32), size, method="bilinear")
    return tf.nn.softmax(logits)


def multi_scale_probabilities(model, images, scales=(1.0,), flip=False):
    """Class probabilities ``[B, H, W, C]`` averaged over ``scales`` (and flips when ``flip``)."""
    size = tf.shape(images)[1:3]
    total = None
    count = 0
    for scale in scales:
        scaled = images
        if scale != 1.0:
            scaled_size = tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32)
            scaled = tf.image.resize(images, scaled_size, method="bilinear")
        views = [(scaled, False)] + ([(scaled[:, :, ::-1], True)] if flip else [])
        for view, flipped in views:
            probabilities = _softmax_at(model, view, size)
            if flipped:
                probabilities = probabilities[:, :, ::-1]
            total = probabilities if total is None else total + probabilities
            count += 1
    return total / count


def sliding_window_probabilities(model, images, window, stride=None, pad_value=127.5):
    """Class probabilities from overlapping ``window`` crops (H, W), averaged where they overlap.

    The image is padded bottom/right to at least the window; windows start every ``stride``
    pixels (default two thirds of the window) and the last one is aligned with the far edge.
    """
    window = tuple(int(v) for v in window)
    stride = tuple(int(v) for v in (stride or (max(1, window[0] * 2 // 3), max(1, window[1] * 2 // 3))))
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    padded_h, padded_w = tf.maximum(height, window[0]), tf.maximum(width, window[1])
    padded = tf.pad(images - pad_value, [[0, 0], [0, padded_h - height], [0, padded_w - width], [0, 0]]) + pad_value

    def starts(length, size, step):
        count = (length - size + step - 1) // step + 1
        return tf.minimum(tf.range(count) * step, length - size)

    ys, xs = starts(padded_h, window[0], stride[0]), starts(padded_w, window[1], stride[1])
    grid = tf.reshape(tf.stack(tf.meshgrid(ys, xs, indexing="ij"), -1), [-1, 2])

    def accumulate(i, total, counts):
        y, x = grid[i, 0], grid[i, 1]
        crop = padded[:, y : y + window[0], x : x + window[1]]
        probabilities = _softmax_at(model, crop, window)
        paddings = [[0, 0], [y, padded_h - y - window[0]], [x, padded_w - x - window[1]], [0, 0]]
        return i + 1, total + tf.pad(probabilities, paddings), counts + tf.pad(tf.ones_like(probabilities[..., :1]), paddings)

    num_classes = model.output_shape[-1]
    batch = tf.shape(images)[0]
    total = tf.zeros([batch, padded_h, padded_w, num_classes])
    counts = tf.zeros([batch, padded_h, padded_w, 1])
    _, total, counts = tf.while_loop(lambda i, *_: i < tf.shape(grid)[0], accumulate, (0, total, counts))
    return (total / counts)[:, :height, :width]


def probabilities(model, images, *, scales=(1.0,), flip=False, window=None, window_stride=None):
    """Class probabilities of ``images`` (raw RGB, float) by the chosen inference mode."""
    if window is not None:
        if tuple(scales) != (1.0,) or flip:
            raise ValueError("sliding-window inference runs at scale 1.0 without flips; drop scales/flip or window")
        return sliding_window_probabilities(model, images, window, window_stride)
    return multi_scale_probabilities(model, images, scales, flip)


def apply_crf(images, probs, crf_params):
    """Dense-CRF marginals of ``probs`` on ``images`` (``crf_params``: ``tfseg.crf.dense_crf`` keywords)."""
    from tfseg.crf import dense_crf

    pixels = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)
    unary = -tf.math.log(tf.clip_by_value(probs, 1e-8, 1.0))
    return dense_crf(pixels, unary, **crf_params)


@dataclasses.dataclass
class EvaluationResult:
    """A split's confusion matrix (``[true, predicted]`` pixel counts) and the FCN scores."""

    confusion: np.ndarray
    class_names: tuple = ()

    @property
    def scores(self):
        scores = scores_from_confusion(self.confusion)
        return {key: float(scores[key].numpy()) for key in SCORE_NAMES}

    @property
    def iou(self):
        return [float(v) for v in scores_from_confusion(self.confusion)["iou"].numpy()]

    def to_dict(self):
        names = self.class_names or tuple(str(k) for k in range(len(self.confusion)))
        return {
            **self.scores,
            "per_class_iou": {name: (None if np.isnan(v) else v) for name, v in zip(names, self.iou)},
            "confusion_matrix": self.confusion.astype(np.int64).tolist(),
            "note": "classes absent from both truth and prediction are left out of the means",
        }

    def table(self):
        names = self.class_names or tuple(str(k) for k in range(len(self.confusion)))
        width = max(len(n) for n in (*names, "frequency_weighted_iou"))
        lines = [f"{'class':<{width}}  IoU"]
        lines += [f"{name:<{width}}  {'  n/a' if np.isnan(v) else f'{100 * v:5.2f}'}" for name, v in zip(names, self.iou)]
        lines.append("-" * (width + 7))
        lines += [f"{key:<{width}}  {100 * value:5.2f}" for key, value in self.scores.items()]
        return "\n".join(lines)

    def save_json(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)


def evaluate_batches(model, batches, num_classes, ignore_label, *, strategy=None, crf=None, **inference):
    """Confusion matrix (int64 numpy) of ``model`` over ``batches`` of ``(images, labels)``.

    With ``strategy``, every batch is split across its replicas and the per-replica matrices are
    summed; a partial last batch is split too (a replica may receive no image) and counted exactly.
    ``crf``: None, or a dict of ``tfseg.crf.dense_crf`` keywords applied to the probabilities.
    """
    strategy = strategy or tf.distribute.get_strategy()

    def replica_confusion(images, labels):
        def count():
            probs = probabilities(model, images, **inference)
            if crf is not None:
                probs = apply_crf(images, probs, crf)
            predicted = tf.argmax(probs, axis=-1, output_type=tf.int32)
            return confusion_matrix(labels, predicted, num_classes, ignore_label, dtype=tf.float64)

        # A replica's share of the last partial batch may be empty; some kernels reject empty batches.
        empty = tf.zeros([num_classes, num_classes], tf.float64)
        return tf.cond(tf.shape(images)[0] > 0, count, lambda: empty)

    @tf.function(reduce_retracing=True)
    def step(images, labels):
        per_replica = strategy.run(replica_confusion, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    total = np.zeros((num_classes, num_classes), np.float64)
    for images, labels in strategy.experimental_distribute_dataset(batches):
        total += step(images, labels).numpy()
    return np.rint(total).astype(np.int64)


def evaluate_source(model, source, *, batch_size=1, strategy=None, crf=None, **inference):
    """``EvaluationResult`` of ``model`` on an ``ExampleSource`` (a dataset split)."""
    from tfseg.data.pipeline import evaluation_batches

    dataset = source.dataset
    confusion = evaluate_batches(
        model, evaluation_batches(source, batch_size), dataset.num_classes, dataset.ignore_label,
        strategy=strategy, crf=crf, **inference,
    )
    return EvaluationResult(confusion, tuple(dataset.class_names))
