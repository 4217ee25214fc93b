"""What ``tfseg predict`` writes: label PNGs (class ids), colour overlays, and the legend of the colours.

Colours come from ``tfseg.data.palettes`` (through ``ModelInfo.colors``), overlays from ``tfseg.visualize``:
predict, eval, demo and the reports draw with the same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfseg.visualize import overlay, write_rgb


def write_prediction(folder, name, image, labels, colors, alpha=0.5):
    """``<name>_labels.png`` (class ids, 8 or 16 bit) and ``<name>_overlay.png`` in ``folder``."""
    import cv2

    folder = Path(folder)
    ids = labels.astype(np.uint8 if len(colors) <= 256 else np.uint16)
    label_path = folder / f"{name}_labels.png"
    overlay_path = folder / f"{name}_overlay.png"
    if not cv2.imwrite(str(label_path), ids):
        raise OSError(f"cannot write {label_path}")
    write_rgb(overlay_path, overlay(image, labels, colors, alpha))
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
    write_rgb(legend_path, picture)
    return text_path, legend_path
