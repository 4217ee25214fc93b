"""Print the README's table of the CamVid zoo models from their cards (figures of tools/measure_zoo_model.py).

    python tools/camvid_table.py

A card whose training recipe did not hold sequence 0006R0 out has its 0006R0 figure marked "seen in training".
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = (
    ("camvid_unet", "U-Net, same padding + BN, base width 24, input stride 2"),
    ("camvid_deeplab_v3plus_mobilenet_v2", "DeepLab v3+ MobileNetV2, decoder, separable ASPP 6/12/18"),
    ("camvid_segnet_basic", "SegNet-Basic (4+4 layers of 64 7x7, max unpooling)"),
)
HEADER = ("zoo name", "model", "parameters", "training", "0006R0 mIoU", "+ CRF", "multi-scale + flip",
          "val mIoU (same sequence)", "+ CRF", "multi-scale + flip", "float / int8 TFLite mIoU: 0006R0; val",
          "int8 vs float TFLite (2 threads)")


def figure(value, bold=False):
    if value is None:
        return "not measured"
    return f"**{value:.2f}**" if bold else f"{value:.2f}"


def row(name, description):
    from tfseg import zoo
    from tfseg.training.config import read_config_file

    card = zoo.card(name)
    measured = {entry["metric"]: entry["value"] for entry in card.data.get("measured") or ()}
    training = card.data["training"]
    recipe = read_config_file(card.folder / training["config"])
    crop = "x".join(str(v) for v in recipe["crop_size"])
    of_image = " of the half-size image" if training.get("image_scale", 1.0) != 1.0 else ""
    trained = (f"{recipe['steps']:,} steps of batch {recipe['batch_size']}, {crop} crops{of_image}, "
               f"{training['wall_seconds']:,} s")
    seen = "" if (recipe.get("dataset_options") or {}).get("holdout") == "0006R0" else " (seen in training)"
    tflite = "; ".join(
        f"{figure(measured.get(f'{split}_float_tflite_mean_iou'))} / {figure(measured.get(f'{split}_int8_tflite_mean_iou'))}"
        for split in ("heldout", "val")
    )
    speed = "not measured"
    if "int8_speedup" in measured:
        speed = f"{measured['int8_speedup']:.2f}x ({measured['float_tflite_ms']:.1f} / {measured['int8_tflite_ms']:.1f} ms)"
    cells = (f"`{name}`", description, f"{card.data['parameters']:,}", trained,
             figure(measured.get("heldout_mean_iou"), bold=True) + seen, figure(measured.get("heldout_mean_iou_crf")),
             figure(measured.get("heldout_mean_iou_multiscale_flip")), figure(measured.get("val_mean_iou")),
             figure(measured.get("val_mean_iou_crf")), figure(measured.get("val_mean_iou_multiscale_flip")), tflite,
             speed)
    return "| " + " | ".join(cells) + " |"


def main():
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for name, description in ROWS:
        print(row(name, description))
    return 0


if __name__ == "__main__":
    sys.exit(main())
