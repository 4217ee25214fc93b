"""A small synthetic dataset in PASCAL VOC's layout: textured shapes on varied backgrounds.

The embedded default for the demo and the tests (no download). Five shape classes plus
background; each shape class has its own texture (smooth, fine stripes, checks, dots, speckle) and
a preferred hue, with hues overlapping between neighbouring classes, so colour alone does not
separate them. Backgrounds are gradients, soft blotches or wide soft stripes in any hue. Labels are
VOC-style palette colours (written as RGB by OpenCV) with void (255) borders a few pixels wide
along every visible object outline, as in VOC (Everingham et al., IJCV 2010).

Layout written under ``root`` (``open_voc`` reads it)::

    JPEGImages/<id>.jpg (or .png)   SegmentationClass/<id>.png
    ImageSets/Segmentation/{train,val,trainval}.txt
    classes.txt                     background + shape names, one per line
    synthetic.json                  the generator's options (written last: marks a complete set)
"""

from __future__ import annotations

import colorsys
import inspect
import json
from pathlib import Path

import numpy as np

from tfseg.data.folder import read_class_names
from tfseg.data.layout import require_file
from tfseg.data.palettes import voc_colormap
from tfseg.data.voc import open_voc

SHAPES = ("circle", "rectangle", "triangle", "star", "cross")
CLASS_NAMES = ("background",) + SHAPES
IGNORE_LABEL = 255
_HUES = {shape: k / len(SHAPES) for k, shape in enumerate(SHAPES)}
_HUE_SPREAD = 0.12  # hue centres are 0.2 apart: neighbouring ranges overlap
_SPLIT_CODES = {"train": 0, "val": 1}


def write_synthetic_voc(root, *, num_train=200, num_val=50, size=(128, 128), seed=0, image_format="jpg",
                        border=2, max_objects=5):
    """Write the dataset under ``root`` (created) and return ``root`` as a Path.

    ``size``: (H, W). ``border``: width in pixels of the void outline. Each image holds 2 to
    ``max_objects`` shapes (they may overlap and leave the frame). Image ``i`` of a split
    depends only on (seed, split, i), so changing ``num_train`` keeps the other images.
    """
    import cv2

    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format={image_format!r}; valid: 'jpg', 'png'")
    height, width = (int(s) for s in size)
    if min(height, width) < 32:
        raise ValueError(f"size={size}: the shapes need at least 32x32 pixels")
    root = Path(root)
    options = dict(num_train=num_train, num_val=num_val, size=[height, width], seed=seed,
                   image_format=image_format, border=border, max_objects=max_objects)
    (root / "synthetic.json").unlink(missing_ok=True)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    colors_bgr = np.ascontiguousarray(voc_colormap(256)[:, ::-1])
    lists = {}
    for split, count in (("train", num_train), ("val", num_val)):
        ids = [f"{split}_{i:05d}" for i in range(count)]
        for i, image_id in enumerate(ids):
            rng = np.random.default_rng([seed, _SPLIT_CODES[split], i])
            image, label = synthetic_example(rng, height, width, first_shape=i % len(SHAPES),
                                             border=border, max_objects=max_objects)
            params = [cv2.IMWRITE_JPEG_QUALITY, 90] if image_format == "jpg" else []
            cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.{image_format}"), image[..., ::-1], params)
            cv2.imwrite(str(root / "SegmentationClass" / f"{image_id}.png"), colors_bgr[label])
        lists[split] = ids
    lists["trainval"] = lists["train"] + lists["val"]
    for split, ids in lists.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in CLASS_NAMES))
    (root / "synthetic.json").write_text(json.dumps(options, indent=1) + "\n")
    return root


def open_synthetic(root, *, generate=False, **options):
    """The synthetic dataset at ``root`` as a ``SegmentationDataset`` (VOC colours, void 255).

    ``generate=True`` writes it first unless ``root`` already holds one written with the same
    ``options`` (those of :func:`write_synthetic_voc`).
    """
    if root is None:
        raise ValueError("synthetic: no root given: set data_root (tfseg train --data-root DIR) to a folder written by "
                         "tfseg.data.synthetic.write_synthetic_voc, or choose another dataset")
    valid = inspect.signature(write_synthetic_voc).parameters
    unknown = sorted(set(options) - set(valid) | ({"root"} & set(options)))
    if unknown:
        raise TypeError(f"synthetic: unknown option(s) {unknown}; valid: {[p for p in valid if p != 'root']}")
    if options and not generate:
        raise TypeError(f"synthetic: generator options {sorted(options)} need generate=True")
    root = Path(root)
    if generate:
        wanted = {name: p.default for name, p in valid.items() if name != "root"} | options
        wanted["size"] = [int(s) for s in wanted["size"]]
        stored = root / "synthetic.json"
        if not stored.is_file() or json.loads(stored.read_text()) != wanted:
            write_synthetic_voc(root, **options)
    require_file(root / "synthetic.json", "synthetic",
                 "a complete dataset written by tfseg.data.synthetic.write_synthetic_voc (or pass generate=True)")
    return open_voc(root, class_names=read_class_names(root / "classes.txt"), name="synthetic", train_aug=False)


def synthetic_example(rng, height, width, *, first_shape=0, border=2, max_objects=5):
    """One ``(image RGB uint8 [H, W, 3], label uint8 [H, W])``; shape ``first_shape`` is always
    there, drawn last (on top) so every class appears in a split of at least five images."""
    import cv2

    image = _background(rng, height, width)
    label = np.zeros((height, width), np.uint8)
    count = int(rng.integers(2, max_objects + 1))
    shapes = [int(k) for k in rng.integers(0, len(SHAPES), count - 1)] + [int(first_shape)]
    for shape_index in shapes:
        shape = SHAPES[shape_index]
        polygon = _polygon(rng, shape, height, width)
        x, y, w, h = cv2.boundingRect(polygon)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [(polygon - (x0, y0)).astype(np.int32)], 1)
        inside = mask == 1
        image[y0:y1, x0:x1][inside] = _texture(rng, shape, y1 - y0, x1 - x0)[inside]
        cv2.fillPoly(label, [polygon], shape_index + 1)
        cv2.polylines(label, [polygon], True, IGNORE_LABEL, thickness=border)
    image = cv2.GaussianBlur(image, (3, 3), 0.7)
    image += 4.0 * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label


def _color(rng, hue=None):
    hue = rng.uniform() if hue is None else (hue + rng.uniform(-_HUE_SPREAD, _HUE_SPREAD)) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.35, 1.0), rng.uniform(0.35, 1.0)), np.float32) * 255


def _grid(height, width, rng):
    """Pixel coordinates rotated by a random angle: (u, v) float arrays [H, W]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    return x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)


def _mix(a, b, t):
    t = t.astype(np.float32)[..., None]
    return a * (1 - t) + b * t


def _background(rng, height, width):
    import cv2

    kind = rng.integers(3)
    a, b = _color(rng), _color(rng)
    if kind == 0:  # linear gradient
        u, _ = _grid(height, width, rng)
        t = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
        return _mix(a, b, t)
    if kind == 1:  # soft blotches
        cells = int(rng.integers(3, 7))
        small = np.stack([_color(rng) for _ in range(cells * cells)]).reshape(cells, cells, 3)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    u, _ = _grid(height, width, rng)  # wide soft stripes
    t = 0.5 + 0.5 * np.sin(2 * np.pi * u / rng.uniform(14, 28))
    return _mix(a, b, t)


def _texture(rng, shape, height, width):
    hue = _HUES[shape]
    a = _color(rng, hue)
    b = np.clip(a * rng.uniform(0.35, 0.6) + rng.uniform(0, 60), 0, 255)  # same hue family, darker
    u, v = _grid(height, width, rng)
    if shape == "circle":  # smooth shading
        t = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
        return a * (0.7 + 0.5 * t[..., None])
    if shape == "rectangle":  # fine hard stripes
        t = (np.sin(2 * np.pi * u / rng.uniform(6, 10)) > 0)
    elif shape == "triangle":  # checks
        cell = rng.uniform(4, 7)
        t = ((np.floor(u / cell) + np.floor(v / cell)) % 2)
    elif shape == "star":  # dots on a grid
        step = rng.uniform(7, 10)
        du, dv = (u % step) - step / 2, (v % step) - step / 2
        t = (du * du + dv * dv < rng.uniform(2.0, 3.0) ** 2)
    else:  # cross: speckle
        t = rng.random((height, width), np.float32)
    return _mix(a, b, t)


def _polygon(rng, shape, height, width):
    """int32 [N, 2] (x, y) vertices of a randomly placed, sized and rotated shape."""
    import cv2

    r = rng.uniform(0.18, 0.38) * min(height, width)
    cx, cy = rng.uniform(0.5 * r, width - 0.5 * r), rng.uniform(0.5 * r, height - 0.5 * r)
    theta = rng.uniform(0, 2 * np.pi)
    if shape == "circle":
        axes = (int(round(r)), int(round(r * rng.uniform(0.75, 1.0))))
        return cv2.ellipse2Poly((int(round(cx)), int(round(cy))), axes, int(np.degrees(theta)), 0, 360, 5)
    if shape == "rectangle":
        a, b = r * rng.uniform(0.6, 1.0), r * rng.uniform(0.4, 0.9)
        points = [(a, b), (-a, b), (-a, -b), (a, -b)]
    elif shape == "triangle":
        angles = np.radians([90, 210, 330] + rng.uniform(-15, 15, 3))
        points = [(r * np.cos(t), r * np.sin(t)) for t in angles]
    elif shape == "star":
        points = [((r if k % 2 == 0 else 0.45 * r) * np.cos(np.pi * k / 5),
                   (r if k % 2 == 0 else 0.45 * r) * np.sin(np.pi * k / 5)) for k in range(10)]
    else:  # cross: arms of half-width w
        w = 0.3 * r
        points = [(w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w),
                  (-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w)]
    c, s = np.cos(theta), np.sin(theta)
    return np.array([(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]).round().astype(np.int32)
