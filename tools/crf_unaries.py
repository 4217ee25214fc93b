"""Synthetic unaries from ground truth, to exercise the CRF without a trained network (tools and tests).

Kept out of the ``tfseg`` package: it needs OpenCV, which tfseg itself does not import.

A network's class scores are blurry at object boundaries (output stride 8 to 32) and noisy
inside objects; ``corrupted_unary`` imitates both from a label map, so the CRF has real work to
do and its effect on mean IoU can be measured against that ground truth.
"""

from __future__ import annotations

import cv2
import numpy as np


def corrupted_unary(label, num_classes, *, ignore_label=None, stride=8, confidence=4.0,
                    noise=1.5, noise_scale=4, seed=0):
    """Negative log-probabilities float32 [H, W, num_classes] made from an [H, W] label map.

    One-hot truth (uniform where ``ignore_label``) is downsampled by ``stride`` (area) and
    upsampled back bilinearly (boundary blur like a strided network), scaled by ``confidence``
    into logits, plus Gaussian noise of std ``noise`` drawn on a grid ``noise_scale`` times
    coarser than the image and upsampled (blob-shaped errors), then ``-log softmax``.
    """
    label = np.asarray(label)
    height, width = label.shape
    rng = np.random.default_rng(seed)
    one_hot = np.zeros((height, width, num_classes), np.float32)
    valid = label < num_classes if ignore_label is None else label != ignore_label
    rows, cols = np.nonzero(valid)
    one_hot[rows, cols, label[rows, cols]] = 1.0
    one_hot[~valid] = 1.0 / num_classes
    small = (max(1, width // stride), max(1, height // stride))
    blurred = _resize(_resize(one_hot, small, cv2.INTER_AREA), (width, height), cv2.INTER_LINEAR)
    coarse = (max(1, width // noise_scale), max(1, height // noise_scale))
    field = rng.normal(0.0, noise, (coarse[1], coarse[0], num_classes)).astype(np.float32)
    field = _resize(field, (width, height), cv2.INTER_LINEAR)
    logits = confidence * blurred + field
    logits -= logits.max(axis=-1, keepdims=True)
    log_prob = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return (-log_prob).astype(np.float32)


def _resize(array, size, interpolation):
    """cv2.resize for any channel count (some cv2 modes take at most 4 channels: go 4 at a time)."""
    chunks = [cv2.resize(np.ascontiguousarray(array[..., i : i + 4]), size, interpolation=interpolation)
              for i in range(0, array.shape[-1], 4)]
    return np.concatenate([c.reshape(size[1], size[0], -1) for c in chunks], axis=-1)
