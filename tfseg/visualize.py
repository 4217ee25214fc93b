"""Pictures for people: colour label maps, overlays on the image, a confusion-matrix chart."""

from __future__ import annotations

import numpy as np


def colorize(label, palette, ignore_label=None, ignore_color=(0, 0, 0)):
    """RGB uint8 ``[H, W, 3]`` of an integer label map; ``ignore_label`` pixels get ``ignore_color``."""
    palette = np.asarray(palette, np.uint8)
    label = np.asarray(label)
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = palette[:256]
    if ignore_label is not None and 0 <= ignore_label < 256:
        table[ignore_label] = ignore_color
    return table[np.clip(label, 0, 255).astype(np.uint8)]


def overlay(image, label, palette, alpha=0.5, ignore_label=None):
    """The label map's colours (weight ``alpha``) blended over the RGB image (ignored pixels keep the image)."""
    image = np.asarray(image, np.float32)
    colors = colorize(label, palette).astype(np.float32)
    blended = (1 - alpha) * image + alpha * colors
    if ignore_label is not None:
        blended = np.where((np.asarray(label) == ignore_label)[..., None], image, blended)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def confusion_chart(confusion, class_names, cell=36):
    """RGB picture of a confusion matrix, each row normalised to the true class's pixels."""
    import cv2

    confusion = np.asarray(confusion, np.float64)
    n = len(confusion)
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    margin = 8 * max(len(str(name)) for name in class_names) + 16
    size = (margin + n * cell + 8, margin + n * cell + 8)
    picture = np.full((*size, 3), 255, np.uint8)
    for i in range(n):
        for j in range(n):
            value = rows[i, j]
            shade = int(255 * (1 - value))
            y, x = margin + i * cell, margin + j * cell
            picture[y : y + cell - 1, x : x + cell - 1] = (shade, shade, 255)
            text = f"{100 * value:.0f}"
            colour = (255, 255, 255) if value > 0.5 else (0, 0, 0)
            cv2.putText(picture, text, (x + 4, y + cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1)
    for k, name in enumerate(class_names):
        cv2.putText(picture, str(name), (4, margin + k * cell + cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        strip = np.full((cell, margin, 3), 255, np.uint8)
        cv2.putText(strip, str(name), (4, cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        picture[:margin, margin + k * cell : margin + (k + 1) * cell] = np.rot90(strip)
    return picture


def write_rgb(path, rgb):
    """Write an RGB uint8 picture (PNG, JPEG, ... by the suffix); an unwritable path raises naming it."""
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(np.asarray(rgb)[..., ::-1])):
        raise OSError(f"cannot write {path}")
