"""Cityscapes fine annotations (Cordts et al., CVPR 2016): 19 training classes, the rest ignored.

Layout (``root`` holds both folders, as the leftImg8bit_trainvaltest and gtFine_trainvaltest
archives unpack)::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

``labelIds`` are mapped to train ids by ``label_lut`` (cityscapesScripts' ``helpers/labels.py``);
with ``train_ids=True`` the ``*_gtFine_labelTrainIds.png`` files that cityscapesScripts'
``createTrainIdLabelImgs`` writes are read as they are. The test split's label files are
placeholders (its annotations are not public).
"""

from __future__ import annotations


import numpy as np

from tfseg.data.base import SegmentationDataset
from tfseg.data.layout import check_pairs, require_dir, resolve_root

ENV_VAR = "TFSEG_CITYSCAPES_DIR"
IGNORE_LABEL = 255
SPLITS = ("train", "val", "test")

# (name, labelId, trainId, RGB colour) from cityscapesScripts' labels.py; 'license plate' has
# labelId -1 and never appears in labelIds files.
LABELS = (
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
    ("license plate", -1, -1, (0, 0, 142)),
)
_TRAINED = sorted((train_id, name, color) for name, _, train_id, color in LABELS if 0 <= train_id < 255)
CLASS_NAMES = tuple(name for _, name, _ in _TRAINED)
PALETTE = np.array([color for _, _, color in _TRAINED], np.uint8)


def label_lut():
    """uint8 [256]: labelId -> trainId, 255 for every labelId that is not trained on."""
    lut = np.full(256, IGNORE_LABEL, np.uint8)
    for _, label_id, train_id, _ in LABELS:
        if label_id >= 0:
            lut[label_id] = train_id
    return lut


def open_cityscapes(root=None, *, train_ids=False):
    """Cityscapes splits found under ``root/leftImg8bit`` (train, val, test)."""
    root = resolve_root(root, ENV_VAR, "cityscapes")
    images_dir = require_dir(root / "leftImg8bit", "cityscapes",
                             "leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png")
    labels_dir = require_dir(root / "gtFine", "cityscapes", "gtFine/{train,val,test}/<city>/*_gtFine_labelIds.png")
    suffix = "_gtFine_labelTrainIds.png" if train_ids else "_gtFine_labelIds.png"
    splits = {}
    for split in SPLITS:
        if not (images_dir / split).is_dir():
            continue
        split_labels = require_dir(labels_dir / split, "cityscapes", f"the {split} split's label maps (*{suffix})")
        pairs = []
        for image in sorted((images_dir / split).glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            pairs.append((image, split_labels / image.parent.name / f"{stem}{suffix}"))
        splits[split] = check_pairs(pairs, "cityscapes", images_dir / split)
    if not splits:
        raise FileNotFoundError(
            f"cityscapes: missing folders {images_dir / 'train'} and {images_dir / 'val'} "
            "(expected one folder per split holding one folder per city)"
        )
    return SegmentationDataset(
        name="cityscapes", root=root, class_names=CLASS_NAMES, ignore_label=IGNORE_LABEL,
        palette=PALETTE.copy(), splits=splits, label_lut=None if train_ids else label_lut(),
    )
