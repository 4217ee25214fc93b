"""Fine-tune a CamVid zoo model on new classes with plain Keras, then evaluate: the worked example.

    python tools/finetune_example.py [--zoo camvid_deeplab_v3plus_mobilenet_v2] [--data DIR] [--steps 150]

1. the new classes: the synthetic shapes set (background + 5 shapes, VOC layout) written to ``--data``;
2. ``tfseg.zoo.load(name, num_classes=6)``: the CamVid model with a new 6-class classifier, every
   other weight kept;
3. freeze the backbone (its batch norms then use their moving statistics): only the ASPP, the
   decoder and the new classifier learn, which suits a small new dataset;
4. ``model.fit`` on tfseg's augmented stream (``tfseg.zoo.finetune.fine_tune`` does 2-4) (DeepLab's scale/crop/flip), AdamW, the loss that
   ignores void pixels;
5. val mean IoU before (the new head is random) and after.

The same with the command line:
``tfseg train --pretrained camvid_deeplab_v3plus_mobilenet_v2 --dataset synthetic --data-root DIR
--set dataset_options='{"generate": true}' --freeze-backbone --steps 150 --crop 128x128``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="camvid_deeplab_v3plus_mobilenet_v2")
    parser.add_argument("--data", default="runs/synthetic", help="folder for the synthetic set (written once)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--val-limit", type=int, default=None)
    args = parser.parse_args(argv)

    from tfseg import zoo
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource
    from tfseg.training.evaluate import evaluate_source
    from tfseg.zoo.finetune import fine_tune

    dataset = open_dataset("synthetic", args.data, generate=True)
    val = ExampleSource(dataset, "val", limit=args.val_limit).load_all()
    before = evaluate_source(zoo.load(args.zoo, num_classes=dataset.num_classes), val, batch_size=8)
    model = fine_tune(args.zoo, dataset, steps=args.steps, batch_size=args.batch_size, crop_size=(args.crop, args.crop))
    after = evaluate_source(model, val, batch_size=8)
    print(after.table())
    result = {"zoo": args.zoo, "classes": list(dataset.class_names), "steps": args.steps,
              "val_mean_iou_before": before.scores["mean_iou"], "val_mean_iou_after": after.scores["mean_iou"]}
    print(json.dumps(result))
    return model, result


if __name__ == "__main__":
    main()
