"""What ``tfseg predict`` writes: label PNGs (class ids) and colour overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def palette(num_classes):
    """``(num_classes, 3)`` uint8 RGB colours: the PASCAL VOC colour map (bits of the class id spread over RGB)."""
    colors = np.zeros((num_classes, 3), np.uint8)
    for index in range(num_classes):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colors[index] = (r, g, b)
    return colors


def overlay(image, labels, colors, alpha=0.5):
    """``image`` blended with the colours of ``labels`` (weight ``alpha`` on the colours)."""
    colored = colors[np.clip(labels, 0, len(colors) - 1)]
    return np.round((1 - alpha) * image + alpha * colored).astype(np.uint8)


def write_prediction(folder, name, image, labels, colors, alpha=0.5):
    """``<name>_labels.png`` (class ids, 8 or 16 bit) and ``<name>_overlay.png`` in ``folder``."""
    import cv2

    folder = Path(folder)
    ids = labels.astype(np.uint8 if len(colors) <= 256 else np.uint16)
    label_path = folder / f"{name}_labels.png"
    overlay_path = folder / f"{name}_overlay.png"
    for path, data in ((label_path, ids), (overlay_path, cv2.cvtColor(overlay(image, labels, colors, alpha), cv2.COLOR_RGB2BGR))):
        if not cv2.imwrite(str(path), data):
            raise OSError(f"cannot write {path}")
    return label_path, overlay_path
