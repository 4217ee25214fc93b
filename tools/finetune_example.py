"""Fine-tune the CamVid zoo model to a ground robot's classes with plain Keras: the worked example.

    python tools/finetune_example.py [--zoo camvid_unet] [--steps 60]

1. the robot's classes: ``drivable`` (CamVid's Road), ``walkable`` (Pavement) and ``other``
   (obstacles, sky, buildings: every other class), by ``tfseg.data.remap.merge_classes``;
2. a few CamVid train frames to learn from, and frames of sequence 0006R0, which the zoo's U-Net
   never trained on (its recipe holds the sequence out), to score on
   (``tfseg.zoo.finetune.robot_dataset``);
3. ``tfseg.zoo.load(name, num_classes=3)``: the CamVid model with a new 3-class classifier, every
   other weight kept; the backbone frozen (its batch norms use their moving statistics): the U-Net's
   contracting path, or DeepLab's MobileNetV2, so that only the expanding path (DeepLab: ASPP and
   decoder) and the new classifier learn: ``model.fit`` on tfseg's augmented stream, AdamW, the loss
   that ignores void (``tfseg.zoo.finetune.fine_tune``);
4. the fine-tuned model's mean IoU on the held-out frames, beside the 11-class model's predictions
   merged into the same three classes (probabilities summed per class).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="camvid_unet", help="a CamVid zoo model (default: the demo's)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-images", type=int, default=16)
    parser.add_argument("--eval-images", type=int, default=12)
    args = parser.parse_args(argv)

    from tfseg.zoo.finetune import robot_dataset, robot_fine_tuning

    dataset = robot_dataset(train_images=args.train_images, eval_images=args.eval_images)
    model, result = robot_fine_tuning(args.zoo, args.steps, dataset=dataset, batch_size=args.batch_size)
    for name in dataset.class_names:
        print(f"{name:10s} fine-tuned {100 * result['fine_tuned']['iou'][name]:6.2f}   "
              f"11-class merged {100 * result['merged_11_class']['iou'][name]:6.2f}")
    print(f"mean IoU on {result['eval_images']} frames of the {result['eval_split']}: fine-tuned "
          f"{100 * result['fine_tuned']['mean_iou']:.2f}, 11-class predictions merged "
          f"{100 * result['merged_11_class']['mean_iou']:.2f}")
    print(json.dumps(result))
    return model, result


if __name__ == "__main__":
    main()
