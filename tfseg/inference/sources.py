"""Where images come from for prediction, evaluation, calibration and parity checks.

A source is one of:

- an image file, or a folder of image files (not recursive, sorted by name);
- a dataset split ``NAME:SPLIT`` or ``NAME:SPLIT:COUNT`` for every reader of ``tfseg.data``
  (``camvid:val``, ``voc:val``, ``cityscapes:val``, ``ade20k:val``; each at its reader's default
  root, e.g. ``$TFSEG_VOC_DIR``), and ``folder:PATH``, ``folder:PATH:SPLIT``,
  ``folder:PATH:SPLIT:COUNT`` for the ``folder`` layout. Samples carry their ground truth, read
  through the reader's checked loading (``tfseg.data.read_pair``). ``COUNT`` takes the first
  images, or with ``sample_seed`` a spread sample (``spread_indices``);
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
FOLDER_PREFIX = "folder:"


@dataclasses.dataclass
class Sample:
    name: str
    image: np.ndarray  # uint8 RGB [H, W, 3]
    label: np.ndarray | None = None  # ground-truth class ids [H, W], when the source has them
    ignore_label: int | None = None


@dataclasses.dataclass(frozen=True)
class DatasetSplit:
    """A parsed ``NAME:SPLIT[:COUNT]`` (or ``folder:PATH[:SPLIT[:COUNT]]``) source."""

    dataset: str
    split: str | None
    count: int | None = None
    root: str | None = None

    def open(self, options=None):
        """The ``SegmentationDataset`` (reader ``options`` such as ``{"reduce_zero_label": False}``)."""
        from tfseg.data import open_dataset

        return open_dataset(self.dataset, self.root, **(options or {}))

    def describe(self):
        where = f"{FOLDER_PREFIX}{self.root}" if self.dataset == "folder" else self.dataset
        return f"{where}:{self.split}" + (f":{self.count}" if self.count else "")


def _dataset_names():
    from tfseg.data import list_datasets

    return [name for name in list_datasets() if name not in ("folder", "synthetic")]


def _count(text, source):
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"dataset source {source!r}: COUNT must be a positive integer, got {text!r}")
    return int(text)


def parse_dataset_split(source):
    """The ``DatasetSplit`` that ``source`` names, or None when it is not a dataset source."""
    if not isinstance(source, str) or ":" not in source or Path(source).exists():
        return None
    if source.startswith(FOLDER_PREFIX):
        rest = source[len(FOLDER_PREFIX):]
        parts = rest.split(":")
        for cut in range(len(parts), 0, -1):  # the longest prefix that is a folder is the root
            root = ":".join(parts[:cut])
            extra = parts[cut:]
            if Path(root).is_dir() and len(extra) <= 2:
                split = extra[0] if extra else None
                return DatasetSplit("folder", split, _count(extra[1], source) if len(extra) == 2 else None, root)
        raise ValueError(f"dataset source {source!r}: expected folder:PATH[:SPLIT[:COUNT]] with PATH an existing "
                         "folder holding images/ and labels/")
    parts = source.split(":")
    if parts[0] not in _dataset_names():
        return None
    if len(parts) not in (2, 3) or not parts[1]:
        raise ValueError(f"dataset source {source!r}: expected '{parts[0]}:SPLIT' or '{parts[0]}:SPLIT:COUNT'")
    return DatasetSplit(parts[0], parts[1], _count(parts[2], source) if len(parts) == 3 else None)


def spread_indices(total, count, seed=0):
    """``count`` sorted indices of ``range(total)``, one drawn (seeded) from each of ``count`` equal strata.

    A split's files are often ordered by sequence or city; taking the first ``count`` would
    sample one part of it (CamVid's train list starts with 62 dusk frames).
    """
    if count >= total:
        return list(range(total))
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, total, count + 1)
    starts, stops = np.ceil(edges[:-1]).astype(int), np.ceil(edges[1:]).astype(int)
    return [int(rng.integers(start, max(stop, start + 1))) for start, stop in zip(starts, stops)]


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


def count_samples(source, limit=None, **options):
    """How many samples ``iter_samples(source, limit)`` yields, without reading pixels."""
    return len(_entries(source, limit, **options))


def iter_samples(source, limit=None, *, sample_seed=None, reader_options=None):
    """Samples of ``source`` (see the module docstring), at most ``limit`` of them.

    ``sample_seed``: draw the ``limit`` samples spread over the split, folder or arrays
    (``spread_indices``) instead of taking the first ones. ``reader_options``: the dataset
    reader's options (for example ADE20K's ``reduce_zero_label``).
    """
    for entry in _entries(source, limit, sample_seed=sample_seed, reader_options=reader_options):
        yield entry() if callable(entry) else entry


def load_samples(source, limit=None, **options):
    return list(iter_samples(source, limit, **options))


def _entries(source, limit, sample_seed=None, reader_options=None):
    """Samples or zero-argument readers of samples, so that counting needs no pixels."""
    split = parse_dataset_split(source)
    if split is not None:
        limits = [n for n in (limit, split.count) if n is not None]
        return _dataset_entries(split, min(limits) if limits else None, sample_seed, reader_options)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(
                f"image source {str(source)!r} does not exist (expected an image file, a folder of images, "
                f"or a dataset split such as 'camvid:val', 'voc:val' or 'folder:PATH')"
            )
        if path.is_dir():
            files = _spread(image_files(path), limit, sample_seed)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            raise ValueError(f"{path} is a video; read its frames with video_frames()")
        else:
            files = [path]
        return [lambda p=p: Sample(p.stem, read_image(p)) for p in files]
    return _spread([Sample(name, image) for name, image in _array_images(source)], limit, sample_seed)


def _spread(items, limit, sample_seed):
    """``limit`` of ``items``: spread over them (``spread_indices``) with a ``sample_seed``, else the first ones."""
    if limit is None:
        return list(items)
    if sample_seed is None:
        return list(items[:limit])
    return [items[i] for i in spread_indices(len(items), limit, sample_seed)]


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


def _dataset_entries(split, limit, sample_seed, reader_options):
    from tfseg.data import read_pair

    dataset = split.open(reader_options)
    name = split.split or next(iter(dataset.splits))
    pairs = _spread(dataset.files(name), limit, sample_seed)

    def read(image_path, label_path):
        image, label = read_pair(image_path, label_path, dataset)
        return Sample(Path(image_path).stem, image, label, dataset.ignore_label)

    return [lambda i=i, lab=lab: read(i, lab) for i, lab in pairs]


def read_image(path):
    """uint8 RGB [H, W, 3] of an image file; an unreadable file raises naming it."""
    from tfseg.data.base import read_image as read

    return read(path)


def describe(source, limit=None, sample_seed=None):
    """A short text for reports: where the samples came from."""
    if isinstance(source, (str, Path)):
        text = str(source)
    elif isinstance(source, np.ndarray):
        text = f"array {source.shape}"
    else:
        text = f"{len(source)} arrays"
    if limit is None:
        return text
    if sample_seed is not None:
        return f"{text} (at most {limit} spread over it, seed {sample_seed})"
    return f"{text} (first {limit})"


def open_video(path):
    """An opened ``cv2.VideoCapture`` of ``path``; a missing file or one OpenCV cannot open raises naming it."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path}: not a video file, or a codec OpenCV lacks")
    return capture


def video_frames(path, limit=None):
    """Frames of a video file as samples named ``<stem>_<frame:06d>``; a video that cannot be opened raises."""
    import cv2

    path = Path(path)
    capture = open_video(path)
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
