"""A tiny U-Net trained briefly on downscaled CamVid, shared by the deployment tests of one process.

A few dozen ``model.fit`` steps make its labels non-trivial (several classes, mIoU well above a
constant map), so label agreement between formats means something, unlike on random weights.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

SIZE = (90, 120)  # CamVid's 360x480 divided by 4
CLASSES = 11
_cache = {}


def downscaled(split, count, offset=0):
    """CamVid images (uint8 RGB) and labels (11 = void) of ``split`` at ``SIZE``."""
    from tfseg.data import camvid

    pairs = camvid.split_files(split)[offset:offset + count]
    height, width = SIZE
    images = [cv2.resize(camvid.read_image(i), (width, height), interpolation=cv2.INTER_AREA) for i, _ in pairs]
    labels = [cv2.resize(camvid.read_label(lab), (width, height), interpolation=cv2.INTER_NEAREST) for _, lab in pairs]
    return np.stack(images), np.stack(labels)


def trained_model(steps=64):
    """(keras model, path of its .keras file), trained once per process."""
    if "model" not in _cache:
        import keras

        import tfseg
        from tfseg.losses import SparseCrossEntropyWithIgnore

        keras.utils.set_random_seed(0)
        images, labels = downscaled("train", 64)
        model = tfseg.build_model("unet", CLASSES, base_filters=8, depth=2)
        model.compile(keras.optimizers.Adam(3e-3), SparseCrossEntropyWithIgnore(ignore_label=CLASSES))
        model.fit(images.astype("float32"), labels, batch_size=8, epochs=max(1, steps // 8), verbose=0)
        folder = Path(tempfile.mkdtemp(prefix="tfseg_tiny_camvid_"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "tiny_unet.keras"
        model.save(path)
        _cache["model"] = (model, path)
    return _cache["model"]
