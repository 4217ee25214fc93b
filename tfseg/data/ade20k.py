"""ADE20K SceneParsing, the MIT Scene Parsing Benchmark (Zhou et al., CVPR 2017): 150 classes.

Layout (``root`` is ``ADEChallengeData2016`` or the folder holding it)::

    images/training/ADE_train_<n>.jpg          annotations/training/ADE_train_<n>.png
    images/validation/ADE_val_<n>.jpg          annotations/validation/ADE_val_<n>.png

Annotations store 0 = "other objects" (not evaluated) and k = class k of ``objectInfo150``. Two
numberings (``reduce_zero_label``, mmsegmentation's name for the choice):

- ``True`` (default): 150 classes, ``label_lut`` maps 0 -> 255 (ignored) and k -> k - 1;
- ``False``: the official DeepLab numbering (``research/deeplab/datasets/data_generator.py``:
  151 classes, ignore label 0): class 0 is "other", k stays k, and pixels labelled 0 are not
  evaluated; a model predicting channel 0 is counted wrong there, as in the official evaluation.
  The official ADE20K zoo card's model predicts these 151 channels.

Splits are named train and val.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfseg.data.base import SegmentationDataset
from tfseg.data.layout import check_pairs, files_by_stem, require_dir, resolve_root

ENV_VAR = "TFSEG_ADE20K_DIR"
IGNORE_LABEL = 255
OTHER = "other"  # stored label 0: class 0 in the official numbering, ignored
SPLITS = {"train": "training", "val": "validation"}

# The first name of each class in the benchmark's objectInfo150 (class k + 1 is stored as k + 1).
CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
# The overlay colours mmsegmentation uses for ADE20K (road and skyscraper share one).
PALETTE = np.array([
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
    (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
    (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
    (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
    (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
    (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
    (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133),
    (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0),
    (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153),
    (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
    (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255),
    (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255),
    (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255),
    (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255),
    (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0),
    (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255),
    (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
], np.uint8)


def label_lut(reduce_zero_label=True):
    """uint8 [256]: stored 0 -> 255 (ignored), k -> k - 1 for k = 1..150, anything larger -> 255; or, without
    ``reduce_zero_label``, k -> k for k = 0..150 and anything larger -> 0 (ignored there)."""
    if not reduce_zero_label:
        lut = np.zeros(256, np.uint8)
        lut[: len(CLASS_NAMES) + 1] = np.arange(len(CLASS_NAMES) + 1)
        return lut
    lut = np.full(256, IGNORE_LABEL, np.uint8)
    lut[1 : len(CLASS_NAMES) + 1] = np.arange(len(CLASS_NAMES))
    return lut


def ade20k_root(root):
    """The folder holding ``images/`` and ``annotations/``: ``root`` or ``root/ADEChallengeData2016``."""
    root = Path(root)
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images").is_dir():
            return candidate
    raise FileNotFoundError(
        f"ade20k: missing folder {root / 'images'} (expected ADEChallengeData2016 or its parent, "
        "holding images/{training,validation} and annotations/{training,validation})"
    )


def open_ade20k(root=None, *, reduce_zero_label=True):
    """ADE20K SceneParsing splits train (20,210 images) and val (2,000); see the module docstring for
    ``reduce_zero_label``."""
    root = ade20k_root(resolve_root(root, ENV_VAR, "ade20k"))
    splits = {}
    for split, folder in SPLITS.items():
        images_dir = require_dir(root / "images" / folder, "ade20k", f"the {split} split's .jpg images")
        labels_dir = require_dir(root / "annotations" / folder, "ade20k", f"the {split} split's .png annotations")
        images = files_by_stem(images_dir, (".jpg", ".jpeg", ".png"), "ade20k")
        pairs = [(image, labels_dir / f"{stem}.png") for stem, image in images.items()]
        splits[split] = check_pairs(pairs, "ade20k", images_dir)
    if not reduce_zero_label:
        return SegmentationDataset(
            name="ade20k", root=root, class_names=(OTHER, *CLASS_NAMES), ignore_label=0,
            palette=np.concatenate([np.zeros((1, 3), np.uint8), PALETTE]), splits=splits,
            label_lut=label_lut(reduce_zero_label=False),
        )
    return SegmentationDataset(
        name="ade20k", root=root, class_names=CLASS_NAMES, ignore_label=IGNORE_LABEL,
        palette=PALETTE.copy(), splits=splits, label_lut=label_lut(),
    )
