"""Colour palettes: PASCAL VOC's bitmap colour map, also used for datasets that bring none."""

from __future__ import annotations

import numpy as np


def voc_colormap(n=256):
    """``(n, 3)`` uint8 RGB: VOCdevkit's ``labelcolormap`` (Everingham et al., IJCV 2010).

    Bit ``j`` of index ``k``'s bits (0,1,2), (3,4,5), ... goes to bit ``7 - j`` of R, G, B; the map
    is one-to-one on 0..255, so colours decode back to indices. Index 255 (void) is (224, 224, 192).
    """
    k = np.arange(n)
    rgb = np.zeros((n, 3), np.int64)
    for shift in range(8):
        for channel in range(3):
            rgb[:, channel] |= ((k >> (3 * shift + channel)) & 1) << (7 - shift)
    return rgb.astype(np.uint8)


def generated_palette(num_classes):
    """Distinct colours for a class list that brings none: the first ``num_classes`` VOC colours."""
    if not 0 < num_classes <= 256:
        raise ValueError(f"num_classes={num_classes}; a palette holds 1..256 colours")
    return voc_colormap(256)[:num_classes].copy()
