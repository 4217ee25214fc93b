"""One CRF path: the zoo U-Net with its card's CRF inside exported files gives the Keras model + CRF's labels,
and refuses the inference modes where its CRF would run before averaging (scales, flips, windows).

The Keras path refines once, after test-time augmentation (``Predictor(crf=)``); a file holding a
CRF refines whatever it is fed. On the whole image both are the same computation; under
multi-scale + flip or a sliding window they are not, so the file refuses them in one line (a file without a CRF
and crf= refines once after the modes, as the Keras model does).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import tfseg
import tfseg.export
from tfseg.inference import Predictor

SAMPLE = Path(__file__).resolve().parents[1] / "zoo" / "samples" / "camvid_val_0016E5_07959.png"
SIZE = (128, 160)  # a CamVid sample scaled to a size the U-Net takes (multiples of 32)
MODE = "fast"  # what `tfseg export NAME OUT --crf` writes; the exact mode differs only in its options


@pytest.fixture(scope="module")
def image():
    pixels = cv2.cvtColor(cv2.imread(str(SAMPLE)), cv2.COLOR_BGR2RGB)
    return cv2.resize(pixels, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def model():
    return tfseg.zoo.load("camvid_unet")


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("crf_files")
    tfseg.export.saved_model(model, folder / "sm", crf=MODE, parity_limit=1)
    tfseg.export.tflite(model, folder / "crf.tflite", crf=MODE, parity_limit=1)
    return {"saved_model": folder / "sm", "tflite": folder / "crf.tflite"}


def test_exported_crf_gives_the_keras_labels_on_the_whole_image_and_refuses_averaged_modes(model, files, image):
    card_options = tfseg.zoo.card("camvid_unet").crf_options(MODE)
    keras_crf = Predictor(model, crf=MODE)
    assert {k: keras_crf.crf_layer.get_config()[k] for k in card_options} == card_options
    expected, _ = keras_crf(image)
    plain, _ = Predictor(model)(image)
    assert np.mean(expected != plain) > 0.001  # the CRF changes labels here, so agreement means something
    for name in ("saved_model", "tflite"):
        file_predictor = Predictor(str(files[name]))
        assert {k: file_predictor.info.crf[k] for k in card_options} == card_options, name
        labels, _ = file_predictor(image)
        agreement = np.mean(labels == expected)
        assert agreement >= (1.0 if name == "saved_model" else 0.999), (name, agreement)
        for inference in (dict(scales=(0.75, 1.0), flip=True), dict(window=(96, 96))):
            with pytest.raises(ValueError, match=r"holds a dense CRF, which would refine every scale, flip or "
                                                 r"window before they are averaged .* export the model without --crf"):
                Predictor(str(files[name]), **inference)


def test_a_crf_inside_a_file_fed_on_a_padded_canvas_is_refused_at_export(tmp_path):
    from tfseg.inference.metadata import ModelInfo, attach
    from tfseg.inference.protocol import InputProtocol

    model = tfseg.build_model("unet", 3, base_filters=4, depth=2)
    attach(model, ModelInfo(protocol=InputProtocol(canvas=(64, 64))))
    with pytest.raises(ValueError, match="a CRF inside the file would refine the padded canvas"):
        tfseg.export.saved_model(model, tmp_path / "sm", crf="fast")
    assert not (tmp_path / "sm").exists()
