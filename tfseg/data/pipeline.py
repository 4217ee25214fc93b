"""``tf.data`` input pipelines over a :class:`~tfseg.data.base.SegmentationDataset`.

Nothing is decoded at start-up: examples stream through ``tf.data``, decoded by OpenCV (which
releases the GIL, so the parallel map decodes on every core; errors name the file) when first
needed, and kept in memory while the decoded split fits in ``CACHE_LIMIT_BYTES``. Training batches
form an endless stream that is a pure function of ``(seed, global step)``: epoch ``e`` visits a
stateless permutation of the split, every example's augmentation is seeded by its position in the
stream, and the last partial batch of an epoch is dropped. A run resumed at step ``s`` therefore
sees exactly the batches an uninterrupted run sees from step ``s`` on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfseg.data.augment import MEAN_PIXEL, deeplab_augment
from tfseg.data.base import DamagedFile, check_file_headers, read_label, read_pair

# Decoded examples are cached in memory up to this many bytes (CamVid train: about 250 MB); past it
# they are decoded again each time they are used.
CACHE_LIMIT_BYTES = 6 * 2**30
# Class weights are counted on at most this many label maps, spread over the split.
CLASS_WEIGHT_SAMPLE = 500


class ExampleSource:
    """The examples of one split, served by index; decoded on use and cached while they fit."""

    def __init__(self, dataset, split, limit=None, cache=True, cache_limit_bytes=CACHE_LIMIT_BYTES):
        pairs = dataset.files(split)
        self.pairs = tuple(pairs[:limit] if limit else pairs)
        self.dataset = dataset
        self.split = split
        self.cache_limit_bytes = cache_limit_bytes if cache else 0
        self._examples = {}
        self._cached_bytes = 0
        self.failure = None  # the first DamagedFile the input stream met (tf.data reports it as an op error)

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        index = int(index)
        example = self._examples.get(index)
        if example is None:
            try:
                example = read_pair(*self.pairs[index], self.dataset)
            except DamagedFile as error:
                self.failure = self.failure or error
                raise
            size = example[0].nbytes + example[1].nbytes
            if self._cached_bytes + size <= self.cache_limit_bytes:
                self._examples[index] = example
                self._cached_bytes += size
        return example

    def label(self, index):
        """The label map of example ``index`` (its image is not read)."""
        cached = self._examples.get(int(index))
        return cached[1] if cached is not None else read_label(self.pairs[int(index)][1], self.dataset)

    def fingerprint(self):
        """``{"root": ..., "files": [[image, label, image bytes, label bytes], ...]}``: what a run trained on.

        Paths are relative to the dataset root (a moved dataset keeps its fingerprint).
        """
        root = Path(self.dataset.root)

        def name(path):
            path = Path(path)
            return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

        files = [[name(image), name(label), Path(image).stat().st_size, Path(label).stat().st_size]
                 for image, label in self.pairs]
        return {"dataset": self.dataset.name, "split": self.split, "files": files}

    def drop_damaged(self):
        """Leave out the examples whose image or label file is no whole image; returns ``[(path, problem), ...]``."""
        from tfseg.data.base import file_problem

        damaged, kept = [], []
        for pair in self.pairs:
            problems = [(path, problem) for path in pair if (problem := file_problem(path))]
            damaged.extend(problems[:1])
            if not problems:
                kept.append(pair)
        self.pairs = tuple(kept)
        return damaged

    def check_files(self):
        """Fail now, naming the file, when an image or label file is empty or not an image; returns self.

        Reads a few bytes of each file (pixels are decoded later, when the stream needs them).
        """
        check_file_headers([path for pair in self.pairs for path in pair])
        return self

    def load_all(self, progress=None):
        """Decode every example now (so a bad file fails at once); returns self."""
        for i in range(len(self)):
            self[i]
            if progress is not None:
                progress(i + 1)
        return self

    def lookup(self, index):
        """TF op: ``(image uint8 [H, W, 3], label uint8 [H, W])`` of example ``index``."""
        image, label = tf.numpy_function(lambda i: self[i], [index], [tf.uint8, tf.uint8], stateful=False)
        image.set_shape((None, None, 3))
        label.set_shape((None, None))
        return image, label


def steps_per_epoch(num_examples, batch_size, split="train"):
    steps = num_examples // batch_size
    if steps == 0:
        raise ValueError(
            f"split {split!r} has {num_examples} examples, fewer than one batch of {batch_size}: lower the batch size"
        )
    return steps


def training_batches(source, batch_size, crop_size, *, seed=0, start_step=0, scale_range=(0.5, 2.0), flip=True,
                     mean_pixel=MEAN_PIXEL, color_jitter=None, rare_class=None):
    """Endless stream of augmented ``(images float32 [B, h, w, 3], labels int32 [B, h, w])`` from ``start_step``.

    ``rare_class``: None or ``(probability, class_priority)`` (``tfseg.data.augment.deeplab_augment``)."""
    n = len(source)
    steps = steps_per_epoch(n, batch_size, source.split)
    per_epoch = steps * batch_size
    start_epoch, offset = divmod(int(start_step), steps)
    seed = int(seed)

    def epoch_elements(epoch):
        order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([tf.constant(seed, tf.int64), epoch])))
        order = order[:per_epoch]
        stream_position = epoch * per_epoch + tf.range(per_epoch, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((order, stream_position))

    def load_and_augment(index, position):
        image, label = source.lookup(index)
        return deeplab_augment(
            image, label, tf.stack([tf.constant(seed, tf.int64), position]), tuple(crop_size),
            source.dataset.ignore_label, scale_range=scale_range, flip=flip, mean_pixel=mean_pixel,
            jitter=color_jitter, rare_class=rare_class,
        )

    stream = tf.data.Dataset.range(start_epoch, 2**31).flat_map(epoch_elements).skip(offset * batch_size)
    stream = stream.map(load_and_augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return stream.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def dataset_mean_pixel(source, limit=64):
    """Mean RGB of the first ``limit`` examples (what DeepLab pads with when it is not ImageNet's)."""
    images = [source[i][0].reshape(-1, 3) for i in range(min(limit, len(source)))]
    return tuple(float(v) for v in np.concatenate(images).mean(axis=0))


def spread_sample(count, limit=CLASS_WEIGHT_SAMPLE):
    """At most ``limit`` indices of ``range(count)``, evenly spread (every index when ``count <= limit``)."""
    if count <= limit:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, limit).round()})


def median_frequency_weights(source, num_classes):
    """Median frequency balancing (Eigen & Fergus 2015, as SegNet trains on CamVid).

    ``freq(c)`` is the pixels of class ``c`` divided by the pixels of the images where ``c``
    appears; the weight is ``median(freq) / freq(c)``. Ignored pixels count nowhere; a class that
    never appears gets weight 0 (it can contribute no loss anyway). Counted on every label map of
    a split of up to ``CLASS_WEIGHT_SAMPLE`` examples, else on that many spread over the split.
    """
    pixels = np.zeros(num_classes, np.float64)
    image_pixels = np.zeros(num_classes, np.float64)
    for label in (source.label(i) for i in spread_sample(len(source))):
        counts = np.bincount(label.ravel(), minlength=256)[:num_classes].astype(np.float64)
        total = counts.sum()
        pixels += counts
        image_pixels += np.where(counts > 0, total, 0.0)
    present = image_pixels > 0
    frequency = np.where(present, pixels / np.where(present, image_pixels, 1.0), 0.0)
    median = np.median(frequency[present])
    return [float(median / f) if f > 0 else 0.0 for f in frequency]


def sqrt_median_frequency_weights(source, num_classes):
    """The square root of :func:`median_frequency_weights`: a milder balancing of rare classes."""
    return [float(np.sqrt(w)) for w in median_frequency_weights(source, num_classes)]


def fingerprint_changes(previous, current, limit=3):
    """What differs between two :meth:`ExampleSource.fingerprint` results, in words ('' when nothing)."""
    old = {tuple(f[:2]): f[2:] for f in previous["files"]}
    new = {tuple(f[:2]): f[2:] for f in current["files"]}
    parts = []
    for what, names in (("added", [k for k in new if k not in old]), ("removed", [k for k in old if k not in new]),
                        ("changed size", [k for k in new if k in old and new[k] != old[k]])):
        if names:
            shown = ", ".join(image for image, _ in names[:limit]) + (", ..." if len(names) > limit else "")
            parts.append(f"{len(names)} file pair(s) {what} ({shown})")
    return "; ".join(parts)


def fingerprint_digest(fingerprint):
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


# Named class weightings a training config may ask for (``TrainConfig.class_weights``).
CLASS_WEIGHTINGS = {
    "median_frequency": median_frequency_weights,
    "sqrt_median_frequency": sqrt_median_frequency_weights,
}
