"""Where images come from for prediction, calibration and parity checks.

A source is one of:

- an image file, or a folder of image files (not recursive, sorted by name);
- a dataset split written ``camvid:val`` or ``camvid:train:20`` (the first 20 files), whose
  samples carry their ground-truth labels;
- a video file (``video_frames``), one sample per frame;
- uint8 RGB arrays: one ``[H, W, 3]``, a batch ``[N, H, W, 3]`` or a list of ``[H, W, 3]``.

Every sample is ``Sample(name, image, label, ignore_label)`` with ``image`` uint8 RGB [H, W, 3].
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DATASET_SPLITS = {"camvid": ("train", "val")}


@dataclasses.dataclass
class Sample:
    name: str
    image: np.ndarray  # uint8 RGB [H, W, 3]
    label: np.ndarray | None = None  # ground-truth class ids [H, W], when the source has them
    ignore_label: int | None = None


def parse_dataset_split(source):
    """``(dataset, split, limit)`` for ``"camvid:val"`` / ``"camvid:val:8"``; None if not that form."""
    if not isinstance(source, str) or ":" not in source or Path(source).exists():
        return None
    parts = source.split(":")
    if parts[0] not in DATASET_SPLITS:
        return None
    if len(parts) not in (2, 3) or parts[1] not in DATASET_SPLITS[parts[0]]:
        raise ValueError(
            f"dataset source {source!r}: expected '{parts[0]}:SPLIT' or '{parts[0]}:SPLIT:COUNT' "
            f"with SPLIT one of {list(DATASET_SPLITS[parts[0]])}"
        )
    limit = None
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) < 1:
            raise ValueError(f"dataset source {source!r}: COUNT must be a positive integer")
        limit = int(parts[2])
    return parts[0], parts[1], limit


def check_image(image, what="image"):
    """``image`` as uint8 RGB [H, W, 3], or a ValueError saying what is wrong."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 RGB pixels [height, width, 3]; got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{what} must be uint8 RGB pixels [height, width, 3]; got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return image


def image_files(folder):
    """Image files directly in ``folder``, sorted by name; a folder without any raises."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    return files


def count_samples(source, limit=None):
    """How many samples ``iter_samples(source, limit)`` yields, without reading pixels."""
    return len(_entries(source, limit))


def iter_samples(source, limit=None):
    """Samples of ``source`` (see the module docstring), at most ``limit`` of them."""
    for entry in _entries(source, limit):
        yield entry() if callable(entry) else entry


def load_samples(source, limit=None):
    return list(iter_samples(source, limit))


def _entries(source, limit):
    """Samples or zero-argument readers of samples, so that counting needs no pixels."""
    split = parse_dataset_split(source)
    if split is not None:
        dataset, name, count = split
        limits = [n for n in (limit, count) if n is not None]
        return _dataset_entries(dataset, name, min(limits) if limits else None)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(
                f"image source {str(source)!r} does not exist (expected an image file, a folder of images, "
                f"or a dataset split such as 'camvid:val')"
            )
        if path.is_dir():
            files = image_files(path)[:limit]
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            raise ValueError(f"{path} is a video; read its frames with video_frames()")
        else:
            files = [path]
        return [lambda p=p: Sample(p.stem, read_image(p)) for p in files]
    return [Sample(name, image) for name, image in _array_images(source)][:limit]


def _array_images(source):
    if isinstance(source, np.ndarray) and source.ndim == 4:
        return [(f"image_{i:04d}", check_image(image, f"image {i}")) for i, image in enumerate(source)]
    if isinstance(source, np.ndarray):
        return [("image_0000", check_image(source))]
    if isinstance(source, (list, tuple)):
        return [(f"image_{i:04d}", check_image(image, f"image {i}")) for i, image in enumerate(source)]
    raise TypeError(
        f"image source must be a path, a folder, a dataset split such as 'camvid:val' or uint8 arrays; "
        f"got {type(source).__name__}"
    )


def _dataset_entries(dataset, split, limit):
    from tfseg.data import camvid

    pairs = camvid.split_files(split)[:limit]

    def read(image_path, label_path):
        return Sample(Path(image_path).stem, read_image(image_path), camvid.read_label(label_path), camvid.IGNORE_LABEL)

    return [lambda i=i, lab=lab: read(i, lab) for i, lab in pairs]


def read_image(path):
    """uint8 RGB [H, W, 3] of an image file; an unreadable file raises naming it."""
    from tfseg.data.base import read_image as read

    return read(path)


def describe(source, limit=None):
    """A short text for reports: where the samples came from."""
    if isinstance(source, (str, Path)):
        text = str(source)
    elif isinstance(source, np.ndarray):
        text = f"array {source.shape}"
    else:
        text = f"{len(source)} arrays"
    return text if limit is None else f"{text} (first {limit})"


def video_frames(path, limit=None):
    """Frames of a video file as samples named ``<stem>_<frame:06d>``; a video that cannot be opened raises."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path}: not a video file, or a codec OpenCV lacks")
    try:
        index = 0
        while limit is None or index < limit:
            ok, frame = capture.read()
            if not ok:
                break
            yield Sample(f"{path.stem}_{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
        if index == 0:
            raise ValueError(f"cannot read any frame from video {path}")
    finally:
        capture.release()


def video_frame_count(path):
    """The frame count the container reports (0 when unknown)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if capture.isOpened() else 0
    finally:
        capture.release()


def synthetic_samples(count=4, size=(96, 128), seed=0):
    """Smooth random RGB images (blobs at several scales plus noise): parity data when none is given."""
    import cv2

    rng = np.random.default_rng(seed)
    height, width = size
    samples = []
    for i in range(count):
        image = np.zeros((height, width, 3), np.float32)
        for cells in (2, 5, 11):
            coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
            image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) / 3
        image += rng.normal(0, 8, image.shape)
        samples.append(Sample(f"synthetic_{i:02d}", np.clip(image, 0, 255).astype(np.uint8)))
    return samples
