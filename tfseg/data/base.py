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
    ``split_notes``: optional ``{split: text}`` saying what a split holds (CamVid's held-out sequence).
    """

    name: str
    root: Path
    class_names: tuple
    ignore_label: int
    palette: np.ndarray  # (num_classes, 3) uint8 RGB, for overlays
    splits: dict
    label_lut: np.ndarray | None = None
    label_colors: np.ndarray | None = None
    split_notes: dict = dataclasses.field(default_factory=dict)  # {split: what it holds}, for reports

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


# The first bytes of the image formats OpenCV reads for tfseg (PNG, JPEG, BMP, TIFF, WebP).
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
PNG_SIGNATURE = IMAGE_SIGNATURES[0]
JPEG_SIGNATURE = IMAGE_SIGNATURES[1]
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC: the last bytes of a whole PNG
JPEG_END = b"\xff\xd9"  # the end-of-image marker


class DamagedFile(ValueError):
    """An image or label file that is not an image, or holds only part of one (truncated)."""


def file_problem(path, content=None):
    """Why the file ``path`` (or its bytes ``content``) is no whole image, or None when it looks whole.

    Checks the first bytes (an image format's signature) and, for PNG and JPEG, that the file
    ends where the format says it ends (a truncated file decodes only in part: OpenCV fills the
    rest with grey and only warns). Reads 12 + 16 bytes of a file that ends with its end marker;
    a JPEG with data after its end marker, or a PNG with data after IEND, is read whole.
    """
    try:
        if content is None:
            with open(path, "rb") as file:
                head = file.read(12)
                file.seek(0, 2)
                file.seek(max(file.tell() - 16, 0))
                tail = file.read()
        else:
            head, tail = bytes(content[:12]), bytes(content[-16:])
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if not head.startswith(IMAGE_SIGNATURES) or (head.startswith(b"RIFF") and head[8:12] != b"WEBP"):
        return "is not an image file (empty, truncated or another format)"
    if head.startswith(PNG_SIGNATURE) and not tail.endswith(PNG_END):
        whole = _png_is_whole(_bytes_of(path, content))
    elif head.startswith(JPEG_SIGNATURE) and not tail.rstrip(b"\x00").endswith(JPEG_END):
        whole = _jpeg_is_whole(_bytes_of(path, content))
    else:
        whole = True
    return None if whole else "is truncated (the file ends before the image does)"


def _bytes_of(path, content):
    if content is not None:
        return bytes(content)
    with open(path, "rb") as file:
        return file.read()


def _png_is_whole(data):
    """True when the chunks of a PNG reach IEND within ``data``."""
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        if data[position + 4:position + 8] == b"IEND":
            return True
        position += 12 + length
    return False


def _jpeg_is_whole(data):
    """True when a JPEG's end-of-image marker follows its first scan (thumbnails come before the scan)."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data, in which a literal FF D9 is the end marker
            return data.find(JPEG_END, position + 2) >= 0
        if marker == 0xD9:
            return True
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return False


def check_file_headers(paths):
    """Raise ``DamagedFile`` naming the first file of ``paths`` that is no whole image (:func:`file_problem`).

    A cheap start-up check (a few bytes of each file) that catches empty, foreign and truncated
    files before training; pixels are decoded only when the input stream needs them.
    """
    for path in paths:
        problem = file_problem(path)
        if problem:
            raise DamagedFile(f"{path} {problem}")


def _read_whole(path, what):
    """The bytes of ``path``, decoded by OpenCV (``IMREAD_UNCHANGED``), or ``DamagedFile`` naming it."""
    import cv2

    try:
        content = np.fromfile(str(path), np.uint8)
    except OSError as error:
        raise DamagedFile(f"cannot read {what} {path}: {error.strerror}") from None
    problem = file_problem(path, content)
    data = None if problem else cv2.imdecode(content, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DamagedFile(f"cannot read {what} {path}: it {problem or 'is corrupt (it does not decode)'}")
    return data


def read_image(path):
    """RGB uint8 ``[H, W, 3]``; grayscale, RGBA and 16-bit files are converted with a warning."""
    import warnings

    import cv2

    data = _read_whole(path, "image")
    if data.dtype == np.uint16:
        warnings.warn(f"image {path} has 16-bit pixels; scaled to 8 bits", stacklevel=2)
        data = ((data.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if data.dtype != np.uint8:
        raise ValueError(f"image {path} has dtype {data.dtype}; expected 8-bit pixels")
    if data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 1):
        warnings.warn(f"image {path} is grayscale; converted to RGB", stacklevel=2)
        return cv2.cvtColor(data.reshape(data.shape[:2]), cv2.COLOR_GRAY2RGB)
    if data.shape[2] == 4:
        warnings.warn(f"image {path} has an alpha channel; converted to RGB (alpha dropped)", stacklevel=2)
        return cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def read_label(path, dataset):
    """Training ids ``[H, W]`` uint8 of the label file ``path`` of ``dataset``.

    Colour-coded labels are mapped through ``dataset.label_colors``, stored values through
    ``dataset.label_lut``; any value that is neither a class nor ``ignore_label`` raises.
    """
    import cv2

    data = _read_whole(path, "label map")
    if data.ndim == 3 and dataset.label_colors is not None:
        data = _colors_to_indices(cv2.cvtColor(data[..., :3], cv2.COLOR_BGR2RGB), dataset.label_colors, path)
    elif data.ndim == 3:
        raise ValueError(f"label map {path} has {data.shape[2]} channels; expected a single-channel image of class ids")
    if data.dtype != np.uint8:
        if data.max() > 255:
            raise ValueError(f"label map {path} holds values up to {data.max()}; expected 8-bit class ids")
        data = data.astype(np.uint8)
    if dataset.label_lut is not None:
        data = dataset.label_lut[data]
    bad = (data >= dataset.num_classes) & (data != dataset.ignore_label)
    if bad.any():
        values = sorted(set(np.unique(data[bad]).tolist()))
        raise ValueError(
            f"label map {path} holds values {values[:10]} that are neither a class id (0..{dataset.num_classes - 1}) "
            f"nor the ignore label {dataset.ignore_label}"
        )
    return data


def _colors_to_indices(rgb, colors, path):
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    table = (colors[:, 0].astype(np.int64) << 16) | (colors[:, 1].astype(np.int64) << 8) | colors[:, 2]
    order = np.argsort(table)
    position = np.searchsorted(table[order], codes).clip(0, len(table) - 1)
    found = table[order][position] == codes
    if not found.all():
        colour = tuple(int(c) for c in rgb[~found][0])
        raise ValueError(f"label map {path} has colour {colour} that is not in the dataset's palette")
    return order[position].astype(np.uint8)


def read_pair(image_path, label_path, dataset):
    """``(image, label)`` of one example; a size mismatch raises naming both files."""
    image = read_image(image_path)
    label = read_label(label_path, dataset)
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(
            f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label map {label_path} "
            f"is {label.shape[1]}x{label.shape[0]}"
        )
    return image, label
