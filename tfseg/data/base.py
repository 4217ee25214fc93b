"""What every dataset reader returns: files per split, class names, ignore label, palette.

A reader (one module per on-disk layout: ``camvid``, ``voc``, ``cityscapes``, ``ade20k``,
``folder``) checks its layout when opened and fails at once naming the missing file or folder.
Pixels are read later, by ``tfseg.data.pipeline``; the reader only says where they are and how
stored label values map to training ids (``label_lut``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class SegmentationDataset:
    """A dataset on disk.

    ``splits``: ``{split: ((image_path, label_path), ...)}``.
    ``label_lut``: optional uint8 array of length 256 mapping a stored label value to its training
    id (``ignore_label`` for values that are not trained on), e.g. Cityscapes labelIds -> trainIds.
    ``label_colors``: optional ``(K, 3)`` uint8 RGB colours when labels are stored as colour PNGs
    (VOC's palette PNGs decode to RGB); row ``k`` is the colour of stored value ``k``.
    """

    name: str
    root: Path
    class_names: tuple
    ignore_label: int
    palette: np.ndarray  # (num_classes, 3) uint8 RGB, for overlays
    splits: dict
    label_lut: np.ndarray | None = None
    label_colors: np.ndarray | None = None

    @property
    def num_classes(self):
        return len(self.class_names)

    def files(self, split):
        """``((image_path, label_path), ...)`` of ``split``; an unknown or empty split raises."""
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; splits: {sorted(self.splits)} (under {self.root})")
        pairs = self.splits[split]
        if not pairs:
            raise ValueError(f"{self.name}: split {split!r} under {self.root} is empty")
        return pairs
