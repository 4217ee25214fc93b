"""PASCAL VOC 2012 segmentation (Everingham et al., IJCV 2010), optionally with SBD's train_aug.

Layout (``root`` is ``VOCdevkit/VOC2012``, its ``VOCdevkit`` parent, or the folder above that)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png           palette PNGs: colour k of VOC's colour map = class k,
                                         (224, 224, 192) = 255 = void (object borders)
    ImageSets/Segmentation/train.txt     one <id> per line (1464); val.txt (1449);
                                         trainval.txt (2913) is optional

SBD "trainaug" (Hariharan et al., ICCV 2011; the DeepLab recipe's 10,582 training images), optional::

    SegmentationClassAug/<id>.png                 single-channel PNGs of class ids, 255 = void
    ImageSets/SegmentationAug/train_aug.txt       (or ImageSets/Segmentation/train_aug.txt)

``train_aug.txt`` lines are either ``<id>`` or, as in DeepLab's list,
``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` (resolved inside ``root``).
"""

from __future__ import annotations

from pathlib import Path

from tfseg.data.base import SegmentationDataset
from tfseg.data.layout import (
    IMAGE_EXTENSIONS,
    check_pairs,
    files_by_stem,
    read_list,
    require_dir,
    require_file,
    resolve_root,
)
from tfseg.data.palettes import voc_colormap

ENV_VAR = "TFSEG_VOC_DIR"
CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
IGNORE_LABEL = 255
SPLITS = ("train", "val", "trainval")
REQUIRED_SPLITS = ("train", "val")
TRAIN_AUG_LISTS = ("ImageSets/SegmentationAug/train_aug.txt", "ImageSets/Segmentation/train_aug.txt")


def voc_root(root):
    """The folder holding ``JPEGImages``: ``root``, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``."""
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise FileNotFoundError(
        f"voc: missing folder {root / 'JPEGImages'} (expected VOCdevkit/VOC2012 or the VOC2012 folder "
        "itself, holding JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/)"
    )


def open_voc(root=None, *, train_aug=None, class_names=CLASS_NAMES, name="voc"):
    """PASCAL VOC 2012 splits train / val (/ trainval, / train_aug).

    ``train_aug``: None adds the ``train_aug`` split when ``SegmentationClassAug`` is there, True
    requires it, False leaves it out, a path names the list file. ``class_names``: for other
    datasets in VOC's layout (colours are still VOC's colour map).
    """
    root = voc_root(resolve_root(root, ENV_VAR, name))
    images = files_by_stem(root / "JPEGImages", IMAGE_EXTENSIONS, name)
    labels_dir = require_dir(root / "SegmentationClass", name, "VOC's palette PNG label maps")
    lists = require_dir(root / "ImageSets" / "Segmentation", name, "train.txt and val.txt split lists")
    splits = {}
    for split in SPLITS:
        listing = lists / f"{split}.txt"
        if split in REQUIRED_SPLITS:
            require_file(listing, name, f"the {split} split's image ids, one per line")
        elif not listing.is_file():
            continue
        ids = [fields[0] for fields in read_list(listing)]
        splits[split] = _pairs(ids, images, root, labels_dir, name, listing)
    aug = _train_aug(root, images, train_aug, name)
    if aug is not None:
        splits["train_aug"] = aug
    num_classes = len(class_names)
    if not 0 < num_classes <= IGNORE_LABEL:
        raise ValueError(f"{name}: {num_classes} class names; VOC's layout holds 1..255 classes")
    colors = voc_colormap(256)
    return SegmentationDataset(
        name=name, root=root, class_names=tuple(class_names), ignore_label=IGNORE_LABEL,
        palette=colors[:num_classes].copy(), splits=splits, label_colors=colors,
    )


def _pairs(ids, images, root, labels_dir, name, listing):
    missing = [i for i in ids if i not in images]
    if missing:
        raise FileNotFoundError(
            f"{name}: {len(missing)} image(s) listed in {listing} are missing, "
            f"first: {root / 'JPEGImages' / missing[0]}.jpg"
        )
    return check_pairs([(images[i], labels_dir / f"{i}.png") for i in ids], name, listing)


def _train_aug(root, images, train_aug, name):
    if train_aug is False:
        return None
    labels_dir = root / "SegmentationClassAug"
    lists = [root / p for p in TRAIN_AUG_LISTS if (root / p).is_file()]
    if train_aug is None and not lists and not labels_dir.is_dir():
        return None
    require_dir(labels_dir, name, "SBD's train_aug label maps: single-channel PNGs of class ids")
    if train_aug is None or train_aug is True:
        if not lists:
            raise FileNotFoundError(
                f"{name}: missing file {root / TRAIN_AUG_LISTS[0]} (expected SBD's train_aug list, "
                f"also looked for {root / TRAIN_AUG_LISTS[1]})"
            )
        listing = lists[0]
    else:
        listing = require_file(Path(train_aug), name, "SBD's train_aug list")
    pairs = []
    for fields in read_list(listing):
        if len(fields) == 1:
            pairs.append((images.get(fields[0], root / "JPEGImages" / f"{fields[0]}.jpg"),
                          labels_dir / f"{fields[0]}.png"))
        elif len(fields) == 2:
            pairs.append(tuple(root / Path(p).parent.name / Path(p).name for p in fields))
        else:
            raise ValueError(f"{name}: {listing}: expected '<id>' or '<image> <label>', got {' '.join(fields)!r}")
    return check_pairs(pairs, name, listing)
