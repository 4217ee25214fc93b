"""Every architecture and backbone of ``tfseg models`` exports to SavedModel and float TFLite (builtins only).

Built at a small fixed size, compared with the Keras model on CamVid val images resized to it:
SavedModel probabilities within 1e-5 of Keras's (random weights leave exact ties between classes,
which a 1e-8 difference may break either way, so labels are held to 99.9 % like TFLite's), TFLite
labels at least 99.9 %. The default run covers a representative subset
(narrow widths); ``-m slow`` runs the full list of ``tfseg.registry.MODEL_VARIANTS`` at full width.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfseg
import tfseg.export
from tfseg.export.tflite_ops import check_builtins_only
from tfseg.registry import MODEL_VARIANTS

SMALL = (65, 97, 3)
PAPER_UNET = (236, 236, 3)  # valid convolutions need room: 236 -> 52 at full depth
# U-Net in practical mode is exported in tests/test_export.py.
FAST_SUBSET = [
    ("unet", {"mode": "paper", "base_filters": 8}),
    # full-width DeepLab v3+ MobileNetV2: the slowest conversion of the default suite; -m slow runs it
    pytest.param("deeplab_v3plus", {"backbone": "mobilenet_v2"}, marks=pytest.mark.slow),
]


def randomize_zero_weights(model):
    """FCN's score layers start at zero (all labels tie): give every all-zero kernel small random values."""
    rng = np.random.default_rng(0)
    for weight in model.weights:
        value = weight.numpy()
        if weight.trainable and value.ndim > 1 and not value.any():
            weight.assign(rng.normal(0.0, 0.01, value.shape).astype(value.dtype))


def check_exports(name, options, tmp_path, num_classes=12):
    shape = PAPER_UNET if options.get("mode") == "paper" else SMALL
    model = tfseg.build_model(name, num_classes, shape, **options)
    randomize_zero_weights(model)
    saved = tfseg.export.saved_model(model, tmp_path / "sm", parity_data="camvid:val:2")
    lite = tfseg.export.tflite(model, tmp_path / "m.tflite", parity_data="camvid:val:2")
    check_builtins_only((tmp_path / "m.tflite").read_bytes())
    assert saved["images"]["size"] == lite["images"]["size"] == list(shape[:2])
    assert saved["formats"]["saved_model"]["max_probability_difference"] < 1e-5, (name, options, saved["formats"])
    assert saved["formats"]["saved_model"]["pixel_agreement"] >= 99.9, (name, options, saved["formats"])
    assert lite["formats"]["tflite"]["pixel_agreement"] >= 99.9, (name, options, lite["formats"]["tflite"])


@pytest.mark.parametrize("name,options", FAST_SUBSET, ids=["unet-paper", "deeplab_v3plus-mobilenet_v2"])
def test_representative_models_export(name, options, tmp_path):
    check_exports(name, options, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name,options", MODEL_VARIANTS, ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}"
                                                             for n, o in MODEL_VARIANTS])
def test_every_architecture_exports(name, options, tmp_path):
    check_exports(name, options, tmp_path)
