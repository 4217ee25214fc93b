"""What ``tfseg predict`` writes: label PNGs (class ids), colour overlays, and the legend of the colours."""

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


def write_legend(folder, class_names, colors):
    """``classes.txt`` (``id name r g b`` per line) and ``legend.png`` (a swatch and the name per class)."""
    import cv2

    folder = Path(folder)
    text_path = folder / "classes.txt"
    text_path.write_text("".join(f"{k} {name} {r} {g} {b}\n" for k, (name, (r, g, b)) in enumerate(zip(class_names, colors))))
    row, width = 20, 24 + 8 * max(len(str(name)) for name in class_names) + 40
    picture = np.full((row * len(class_names) + 4, width, 3), 255, np.uint8)
    for k, (name, color) in enumerate(zip(class_names, colors)):
        picture[k * row + 2 : (k + 1) * row, 4:24] = color
        cv2.putText(picture, f"{k} {name}", (30, (k + 1) * row - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    legend_path = folder / "legend.png"
    if not cv2.imwrite(str(legend_path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {legend_path}")
    return text_path, legend_path
