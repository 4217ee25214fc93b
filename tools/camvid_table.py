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
HEADER = ("zoo name", "model", "parameters", "training", "0006R0 mIoU", "+ CRF (exact / fast)", "multi-scale + flip",
          "val mIoU (same sequence)", "+ CRF (exact / fast)", "multi-scale + flip",
          "float / int8 TFLite mIoU: 0006R0; val",
          "int8 vs float TFLite (2 threads)")


def figure(value, bold=False):
    if value is None:
        return "not measured"
    return f"**{value:.2f}**" if bold else f"{value:.2f}"


def row(name, description):
    from tfseg import zoo
    from tfseg.training.config import read_config_file

    card = zoo.card(name)
    training = card.data["training"]
    recipe = read_config_file(card.recipe_file())
    crop = "x".join(str(v) for v in recipe["crop_size"])
    of_image = " of the half-size image" if training.get("image_scale", 1.0) != 1.0 else ""
    trained = (f"{recipe['steps']:,} steps of batch {recipe['batch_size']}, {crop} crops{of_image}, "
               f"{training['wall_seconds']:,} s")
    seen = "" if (recipe.get("dataset_options") or {}).get("holdout") == "0006R0" else " (seen in training)"
    tflite = "; ".join(f"{figure(card.measured(f'{split}_float_tflite_mean_iou'))} / "
                       f"{figure(card.measured(f'{split}_int8_tflite_mean_iou'))}" for split in ("heldout", "val"))
    speed = "not measured"
    if card.measured("int8_speedup") is not None:
        speed = (f"{card.measured('int8_speedup'):.2f}x ({card.measured('float_tflite_ms'):.1f} / "
                 f"{card.measured('int8_tflite_ms'):.1f} ms)")
    scores = [figure(card.measured(f"{split}_mean_iou{suffix}"))
              for split in ("heldout", "val") for suffix in ("", "_crf", "_multiscale_flip")]
    for index, split in ((1, "heldout"), (4, "val")):
        scores[index] += f" / {figure(card.measured(f'{split}_mean_iou_crf_fast'))}"
    scores[0] = figure(card.measured("heldout_mean_iou"), bold=True) + seen
    cells = (f"`{name}`", description, f"{card.data['parameters']:,}", trained, *scores, tflite, speed)
    return "| " + " | ".join(cells) + " |"


def main():
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for name, description in ROWS:
        print(row(name, description))
    return 0


if __name__ == "__main__":
    sys.exit(main())
