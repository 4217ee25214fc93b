"""CamVid in the SegNet layout (Brostow et al., PRL 2009; Badrinarayanan et al., TPAMI 2017).

367 train / 101 val (/ 233 test) images, 11 classes + void (11)::

    train/ trainannot/ val/ valannot/ (test/ testannot/)
    train.txt, val.txt (test.txt)   "image_path label_path" per line, the publisher's absolute
                                    paths (/SegNet/CamVid/train/x.png): the last two parts are kept

Sequences: train holds 0001TP (62 dusk frames), 0006R0 (101) and 0016E5 (204); val holds 101
frames of 0016E5 only, so val is not a test of generalisation. ``holdout="0006R0"`` (or a list of
sequences) moves every train frame of those sequences into ``val`` and keeps the standard val as
``same_sequence_val`` (frames of sequences the model trains on); ``trainval`` is then the new
train plus ``same_sequence_val``. Choose recipes and checkpoints on a held-out sequence.

The data lives beside the project, in ``../shared/data/camvid`` relative to the repository
root; ``TFSEG_CAMVID_DIR`` overrides that. It is never copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfseg.data.base import SegmentationDataset
from tfseg.data.layout import check_pairs, read_list, require_file

ENV_VAR = "TFSEG_CAMVID_DIR"
CLASS_NAMES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = 11
SPLITS = ("train", "val")
OPTIONAL_SPLITS = ("test",)
# The SegNet tutorial's colours (Scripts/test_segmentation_camvid.py); void is (0, 0, 0).
PALETTE = np.array([
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
], np.uint8)


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
    if split not in SPLITS + OPTIONAL_SPLITS:
        raise ValueError(f"split={split!r}; valid: {list(SPLITS + OPTIONAL_SPLITS)}")
    root = Path(root) if root is not None else camvid_root()
    listing = require_file(root / f"{split}.txt", "camvid", f"the {split} split's 'image_path label_path' lines")
    pairs = []
    for line_no, fields in enumerate(read_list(listing), 1):
        if len(fields) != 2:
            raise ValueError(f"{listing}: line {line_no}: expected 'image_path label_path', got {' '.join(fields)!r}")
        pairs.append(tuple(root / Path(p).parent.name / Path(p).name for p in fields))
    return pairs


def sequence_of(path):
    """The CamVid sequence a frame belongs to: ``0016E5`` for ``0016E5_07959.png``."""
    return Path(path).name.split("_")[0]


def holdout_splits(splits, holdout):
    """``splits`` with the train frames of the sequences ``holdout`` moved into ``val``.

    Returns train (other sequences), val (the held-out frames), same_sequence_val (the standard
    val) and trainval (train + same_sequence_val), plus test when there is one.
    """
    sequences = (holdout,) if isinstance(holdout, str) else tuple(holdout)
    present = sorted({sequence_of(image) for image, _ in splits["train"]})
    unknown = sorted(set(sequences) - set(present))
    if unknown or not sequences:
        raise ValueError(f"camvid: holdout={holdout!r} names no train sequence {unknown}; train sequences: {present}")
    kept = tuple(pair for pair in splits["train"] if sequence_of(pair[0]) not in sequences)
    held = tuple(pair for pair in splits["train"] if sequence_of(pair[0]) in sequences)
    if not kept:
        raise ValueError(f"camvid: holdout={holdout!r} leaves no train frames; train sequences: {present}")
    split_out = {"train": kept, "val": held, "same_sequence_val": splits["val"], "trainval": kept + splits["val"]}
    if "test" in splits:
        split_out["test"] = splits["test"]
    return split_out


def open_camvid(root=None, *, holdout=None):
    """CamVid splits train and val (and test when ``test.txt`` is there), every listed file checked.

    ``holdout``: a train sequence (``"0006R0"``, ``"0001TP"`` or ``"0016E5"``) or a list of them
    whose frames become the ``val`` split (see the module's docstring).
    """
    root = Path(root) if root is not None else camvid_root()
    splits = {}
    for split in SPLITS + OPTIONAL_SPLITS:
        if split in OPTIONAL_SPLITS and not (root / f"{split}.txt").is_file():
            continue
        splits[split] = check_pairs(split_files(split, root), "camvid", root / f"{split}.txt")
    notes = {"val": "same-sequence frames of 0016E5, a train sequence"}
    if holdout:
        splits = holdout_splits(splits, holdout)
        held = sorted({sequence_of(image) for image, _ in splits["val"]})
        kept = sorted({sequence_of(image) for image, _ in splits["train"]})
        notes = {
            "train": f"sequences {', '.join(kept)}", "val": f"held-out sequence {', '.join(held)}",
            "same_sequence_val": "standard val: frames of 0016E5, a train sequence",
            "trainval": f"train + standard val (sequences {', '.join(kept)})",
        }
    return SegmentationDataset(
        name="camvid", root=root, class_names=CLASS_NAMES, ignore_label=IGNORE_LABEL,
        palette=PALETTE.copy(), splits=splits, split_notes=notes,
    )


def read_image(path):
    """RGB uint8 [H, W, 3]."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path):
    """uint8 [H, W] with values 0..11 (11 = void)."""
    import cv2

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
