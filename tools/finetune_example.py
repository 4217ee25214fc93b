"""Fine-tune a CamVid zoo model on new classes with plain Keras, then evaluate: the worked example.

    python tools/finetune_example.py [--zoo camvid_deeplab_v3plus_mobilenet_v2] [--data DIR] [--steps 150]

1. the new classes: the synthetic shapes set (background + 5 shapes, VOC layout) written to ``--data``;
2. ``tfseg.zoo.load(name, num_classes=6)``: the CamVid model with a new 6-class classifier, every
   other weight kept;
3. freeze the backbone (its batch norms then use their moving statistics): only the ASPP, the
   decoder and the new classifier learn, which suits a small new dataset;
4. ``model.fit`` on tfseg's augmented stream (DeepLab's scale/crop/flip), AdamW, the loss that
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

    import keras

    import tfseg
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource, training_batches
    from tfseg.losses import SparseCrossEntropyWithIgnore
    from tfseg.training.evaluate import evaluate_source
    from tfseg.training.train import configure_for_fine_tuning

    dataset = open_dataset("synthetic", args.data, generate=True)
    train = ExampleSource(dataset, "train").load_all()
    val = ExampleSource(dataset, "val", limit=args.val_limit).load_all()

    model = tfseg.zoo.load(args.zoo, num_classes=dataset.num_classes)
    configure_for_fine_tuning(model, freeze_backbone=True)
    before = evaluate_source(model, val, batch_size=8).scores["mean_iou"]

    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4),
                  loss=SparseCrossEntropyWithIgnore(ignore_label=dataset.ignore_label))
    stream = training_batches(train, args.batch_size, (args.crop, args.crop), scale_range=(0.75, 1.25))
    model.fit(stream, steps_per_epoch=args.steps, epochs=1, shuffle=False, verbose=2)

    after = evaluate_source(model, val, batch_size=8)
    print(after.table())
    result = {"zoo": args.zoo, "classes": list(dataset.class_names), "steps": args.steps,
              "val_mean_iou_before": before, "val_mean_iou_after": after.scores["mean_iou"]}
    print(json.dumps(result))
    return model, result


if __name__ == "__main__":
    main()
