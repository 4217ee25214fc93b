"""Your own data: a folder of images and a folder of label maps, matched by file name stem.

Layout (folder names are options)::

    <root>/classes.txt            one class name per line (or pass ``classes=``)
    <root>/images/<stem>.jpg      (or .png, .bmp, .tif, .webp)
    <root>/labels/<stem>.png      single-channel class ids, ``ignore_label`` for void

or, with splits, ``images/<split>/<stem>.jpg`` and ``labels/<split>/<stem>.png``. Label maps hold
class ids as stored (no colour coding); a label file named ``<stem><label_suffix>.png`` also matches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfseg.data.base import SegmentationDataset
from tfseg.data.layout import (
    IMAGE_EXTENSIONS,
    LABEL_EXTENSIONS,
    files_by_stem,
    require_dir,
    require_file,
)
from tfseg.data.palettes import generated_palette


def read_class_names(path):
    """Class names of a text file, one per line (blank lines skipped)."""
    names = tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    if not names:
        raise ValueError(f"class list {path} holds no names")
    return names


def open_folder(root=None, *, images="images", labels="labels", classes=None, ignore_label=255,
                palette=None, split="train", label_suffix="", name="folder"):
    """Pairs of ``images`` and ``labels`` (folders relative to ``root``, or absolute).

    ``classes``: a list of names or a text file (default ``<root>/classes.txt``). Sub-folders of
    ``images`` are splits (each needs its twin under ``labels``); without any, all files form the
    one split ``split``. ``palette``: ``(num_classes, 3)`` RGB, generated when not given.
    """
    root = Path(root) if root is not None else Path()
    images_dir = require_dir(root / images, name, "the images, or one sub-folder of images per split")
    labels_dir = require_dir(root / labels, name, "the label maps (single-channel PNGs of class ids)")
    class_names = _class_names(root, classes, name)
    num_classes = len(class_names)
    if not (0 <= ignore_label <= 255 and ignore_label >= num_classes):
        raise ValueError(f"{name}: ignore_label={ignore_label} must be in {num_classes}..255 (after the class ids)")
    if palette is None:
        palette = generated_palette(num_classes)
    palette = np.asarray(palette, np.uint8)
    if palette.shape != (num_classes, 3):
        raise ValueError(f"{name}: palette has shape {palette.shape}; expected ({num_classes}, 3)")

    split_dirs = sorted(p for p in images_dir.iterdir() if p.is_dir())
    if split_dirs and files_by_stem(images_dir, IMAGE_EXTENSIONS, name):
        raise ValueError(f"{name}: {images_dir} holds both images and sub-folders; use one or the other")
    if split_dirs:
        folders = {p.name: (p, require_dir(labels_dir / p.name, name, f"the {p.name} split's label maps"))
                   for p in split_dirs}
    else:
        folders = {split: (images_dir, labels_dir)}
    splits = {s: _match(i, lab, label_suffix, name) for s, (i, lab) in folders.items()}
    return SegmentationDataset(
        name=name, root=root, class_names=class_names, ignore_label=ignore_label,
        palette=palette, splits=splits,
    )


def _class_names(root, classes, name):
    if classes is None:
        classes = require_file(root / "classes.txt", name, "the class names, one per line (or pass classes=)")
    if isinstance(classes, (str, Path)):
        return read_class_names(require_file(root / classes, name, "the class names, one per line"))
    classes = tuple(str(c) for c in classes)
    if not classes:
        raise ValueError(f"{name}: classes is empty")
    return classes


def _match(images_dir, labels_dir, label_suffix, name):
    images = files_by_stem(images_dir, IMAGE_EXTENSIONS, name)
    labels = files_by_stem(labels_dir, LABEL_EXTENSIONS, name)
    pairs, unmatched = [], []
    for stem, image in images.items():
        label = labels.pop(stem + label_suffix, None)
        if label is None:
            unmatched.append(image)
        else:
            pairs.append((image, label))
    if unmatched:
        raise FileNotFoundError(
            f"{name}: {len(unmatched)} image(s) in {images_dir} have no label map in {labels_dir}, "
            f"first: {unmatched[0]} (expected {labels_dir / (unmatched[0].stem + label_suffix)}.png)"
        )
    if labels:
        raise FileNotFoundError(
            f"{name}: {len(labels)} label map(s) in {labels_dir} have no image in {images_dir}, "
            f"first: {next(iter(labels.values()))}"
        )
    return tuple(pairs)
