"""CamVid in the SegNet layout (367 train / 101 val, 11 classes + void).

The data lives beside the project, in ``../shared/data/camvid`` relative to the repository
root; ``TFSEG_CAMVID_DIR`` overrides that. It is never copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

ENV_VAR = "TFSEG_CAMVID_DIR"
CLASS_NAMES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = 11
SPLITS = ("train", "val")


def camvid_root():
    """The CamVid folder: ``$TFSEG_CAMVID_DIR`` or ``<repo>/../shared/data/camvid``."""
    if os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR]).expanduser()
    else:
        repo = Path(__file__).resolve().parents[2]
        root = (repo / ".." / "shared" / "data" / "camvid").resolve()
    if not (root / "val.txt").is_file():
        raise FileNotFoundError(
            f"CamVid not found at {root} (no val.txt there); set {ENV_VAR} to the folder holding "
            "train/, trainannot/, val/, valannot/, train.txt and val.txt"
        )
    return root


def split_files(split, root=None):
    """``[(image_path, label_path), ...]`` for ``split`` ('train' or 'val'), resolved under ``root``."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; valid: {list(SPLITS)}")
    root = Path(root) if root is not None else camvid_root()
    pairs = []
    listing = root / f"{split}.txt"
    for line_no, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{listing}:{line_no}: expected 'image_path label_path', got {line!r}")
        # The listed paths are the publisher's absolute paths (/SegNet/CamVid/val/x.png): keep the last two parts.
        image, label = (root / Path(p).parent.name / Path(p).name for p in fields)
        pairs.append((image, label))
    return pairs


def read_image(path):
    """RGB uint8 [H, W, 3]."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path):
    """uint8 [H, W] with values 0..11 (11 = void)."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise FileNotFoundError(f"cannot read label map {path}")
    if label.ndim != 2:
        raise ValueError(f"label map {path} has shape {label.shape}; expected a single-channel image")
    return label


def load_split(split, limit=None, root=None):
    """Images [N, H, W, 3] uint8 and labels [N, H, W] uint8 of the first ``limit`` files of ``split``."""
    pairs = split_files(split, root)[:limit]
    images = np.stack([read_image(i) for i, _ in pairs])
    labels = np.stack([read_label(lab) for _, lab in pairs])
    return images, labels
