"""Scores of any model format on a dataset split, by any inference mode, independent of the batch size.

Every image is evaluated on its own, at its own size (or on its model's canvas, the official
protocol), through ``Predictor.tensor_probabilities``: no image's padding reaches another image
or its own logits, so the confusion matrix is the same for every batch size and replica count.
A Keras model runs in one ``tf.function`` under the ``tf.distribute`` strategy: each step takes
up to ``batch_size`` consecutive images of one size, splits them across the replicas (a replica
may get none) and sums the per-image confusion matrices over replicas. Exported files run in
their own runtime, image by image. Scores follow ``tfseg.metrics`` (FCN's definitions; classes
absent from truth and prediction are left out of the means).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from tfseg.metrics import SCORE_NAMES, scores_from_confusion


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

    def per_class_iou(self):
        """``{class name: IoU or None}`` (None: absent from truth and prediction)."""
        names = self.class_names or tuple(str(k) for k in range(len(self.confusion)))
        return {name: (None if np.isnan(v) else v) for name, v in zip(names, self.iou)}

    def to_dict(self):
        return {
            **self.scores,
            "per_class_iou": self.per_class_iou(),
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


def same_size_batches(source, batch_size):
    """Lists of at most ``batch_size`` consecutive example indices whose images have one size."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    batch, size = [], None
    for index in range(len(source)):
        shape = source[index][0].shape[:2]
        if batch and (shape != size or len(batch) == batch_size):
            yield batch
            batch = []
        batch.append(index)
        size = shape
    if batch:
        yield batch


def check_classes(num_classes, dataset, what):
    """The model's output channels must be the dataset's classes; else an error naming both."""
    if num_classes != dataset.num_classes:
        raise ValueError(
            f"{what} predicts {num_classes} classes, the {dataset.name} dataset has {dataset.num_classes} "
            f"({', '.join(dataset.class_names[:4])}, ...); evaluate it on the dataset it was trained for, with that "
            "reader's numbering (e.g. --dataset-options for ADE20K's reduce_zero_label)"
        )


def evaluate(model, source, *, batch_size=1, strategy=None, options=None, crf=None, num_threads=None, progress=None):
    """``EvaluationResult`` of ``model`` (anything ``Predictor`` takes, or a ``Predictor``) on ``source``.

    ``source``: an ``ExampleSource`` (``tfseg.data.pipeline``): a dataset split served by index.
    ``options``: ``InferenceOptions``; ``crf``: as for ``Predictor``. ``strategy``: a
    ``tf.distribute`` strategy for Keras models (exported files ignore it). ``progress``: called
    with the number of images done after each step.
    """
    from tfseg.inference.predict import Predictor

    predictor = model if isinstance(model, Predictor) else Predictor(model, crf=crf, options=options,
                                                                     num_threads=num_threads)
    dataset = source.dataset
    check_classes(predictor.num_classes, dataset, predictor.runner.name)
    batches = list(same_size_batches(source, batch_size))
    if predictor.runner.traceable and predictor.runner.input_size is None:
        confusion = _distributed_confusion(predictor, source, batches, dataset, strategy, progress)
    else:
        confusion = np.zeros((dataset.num_classes,) * 2, np.float64)
        done = 0
        for batch in batches:
            for index in batch:
                image, label = source[index]
                _, probabilities = predictor(image)
                confusion += image_confusion(label, probabilities.argmax(-1), dataset.num_classes,
                                             dataset.ignore_label).numpy()
            done += len(batch)
            if progress is not None:
                progress(done)
    return EvaluationResult(np.rint(confusion).astype(np.int64), tuple(dataset.class_names))


def image_confusion(label, predicted, num_classes, ignore_label=None):
    """Confusion matrix (float64 ``[true, predicted]``) of predicted labels ``[..., H, W]`` against the truth.

    The truth is centre-cropped to the prediction's size (``truth_under``; a valid-convolution model
    predicts a smaller map). TF ops: eager on arrays (the exported files' path) or traced (Keras).
    """
    import tensorflow as tf

    from tfseg.metrics import confusion_matrix

    predicted = tf.convert_to_tensor(predicted)
    label = truth_under(tf.convert_to_tensor(label), tf.shape(predicted)[-2:])
    return confusion_matrix(label, predicted, num_classes, ignore_label, dtype=tf.float64)


def truth_under(label, shape):
    """The ground truth ``[..., h, w]`` (array or tensor) under a prediction of ``shape`` (H, W), centre-cropped."""
    import tensorflow as tf

    if tf.is_tensor(label) or tf.is_tensor(shape):
        size = tf.shape(label)[-2:]
        tf.debugging.assert_less_equal(shape, size, message="predictions are larger than the label map")
        top, left = tf.unstack((size - shape) // 2)
        return label[..., top : top + shape[0], left : left + shape[1]]
    height, width = shape
    if label.shape[-2] < height or label.shape[-1] < width:
        raise ValueError(f"predictions of shape {tuple(shape)} are larger than the label map {label.shape}")
    top, left = (label.shape[-2] - height) // 2, (label.shape[-1] - width) // 2
    return label[..., top : top + height, left : left + width]


def _distributed_confusion(predictor, source, batches, dataset, strategy, progress):
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    classes, ignore = dataset.num_classes, dataset.ignore_label

    def predicted_confusion(image, label):
        predicted = tf.argmax(predictor.tensor_probabilities(image), axis=-1, output_type=tf.int32)
        return image_confusion(label, predicted, classes, ignore)

    def replica_confusion(images, labels):
        # One image at a time: the numbers do not depend on how many images a replica receives.
        def body(i, total):
            return i + 1, total + predicted_confusion(images[i : i + 1], labels[i : i + 1])

        zeros = tf.zeros([classes, classes], tf.float64)
        return tf.while_loop(lambda i, _: i < tf.shape(images)[0], body, (0, zeros))[1]

    @tf.function(reduce_retracing=True)
    def step(images, labels):
        per_replica = strategy.run(replica_confusion, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    replicas = strategy.num_replicas_in_sync
    total = np.zeros((classes, classes), np.float64)
    done = 0
    for batch in batches:
        images = np.stack([source[i][0] for i in batch])
        labels = np.stack([source[i][1] for i in batch]).astype(np.int32)
        shares = np.array_split(np.arange(len(batch)), replicas)

        def share(context, array):
            return tf.constant(array[shares[context.replica_id_in_sync_group]])

        per_replica_images = strategy.experimental_distribute_values_from_function(lambda c: share(c, images))
        per_replica_labels = strategy.experimental_distribute_values_from_function(lambda c: share(c, labels))
        total += step(per_replica_images, per_replica_labels).numpy()
        done += len(batch)
        if progress is not None:
            progress(done)
    return total
