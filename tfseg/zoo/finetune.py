"""Fine-tuning a zoo model on a dataset with other classes, in plain Keras (``model.fit``)."""

from __future__ import annotations


def fine_tune(name, dataset, *, steps, batch_size=8, crop_size=(128, 128), learning_rate=1e-3, freeze_backbone=True,
              scale_range=(0.75, 1.25), seed=0, verbose=2):
    """``zoo.load(name, num_classes=dataset.num_classes)`` trained ``steps`` steps on ``dataset``'s train split.

    The classifier is new (the card's other weights kept); with ``freeze_backbone`` only the
    layers after the backbone learn and its batch norms use their moving statistics, which suits
    a small dataset. The loss ignores ``dataset.ignore_label``; DeepLab's augmentation; AdamW.
    """
    import keras

    from tfseg.data.pipeline import ExampleSource, training_batches
    from tfseg.losses import SparseCrossEntropyWithIgnore
    from tfseg.training.train import configure_for_fine_tuning
    from tfseg.zoo.load import load

    keras.utils.set_random_seed(seed)  # the new classifier's initial weights
    model = load(name, num_classes=dataset.num_classes)
    configure_for_fine_tuning(model, freeze_backbone=freeze_backbone)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=1e-4),
                  loss=SparseCrossEntropyWithIgnore(ignore_label=dataset.ignore_label))
    train = ExampleSource(dataset, "train").load_all()
    stream = training_batches(train, batch_size, tuple(crop_size), seed=seed, scale_range=scale_range)
    model.fit(stream, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=verbose)
    return model


# A ground robot's classes from CamVid's: where it may drive, where people walk, and everything else.
ROBOT_CLASSES = {"drivable": ["Road"], "walkable": ["Pavement"]}
ROBOT_REST = "other"


def merged_class_model(model, mapping):
    """``model`` whose outputs are its class probabilities summed into new classes, as log-probabilities.

    ``mapping[k]`` is the new class of old class ``k`` (``tfseg.data.remap.class_mapping``); the
    argmax of the result is the most probable new class, the fair way to score an old model on them.
    """
    import keras
    import numpy as np

    matrix = np.zeros((len(mapping), int(mapping.max()) + 1), np.float32)
    matrix[np.arange(len(mapping))[mapping >= 0], mapping[mapping >= 0]] = 1.0
    probabilities = keras.layers.Softmax(name="old_class_probabilities")(model.outputs[0])
    merged = keras.layers.Dense(matrix.shape[1], use_bias=False, trainable=False, name="merge_classes")
    outputs = merged(probabilities)
    merged.set_weights([matrix])
    log_probabilities = keras.layers.Activation(lambda p: keras.ops.log(p + 1e-12), name="log")(outputs)
    return keras.Model(model.inputs, log_probabilities, name=f"{model.name}_merged")


def robot_dataset(holdout="0006R0", train_images=16, eval_images=12, root=None):
    """CamVid with ``ROBOT_CLASSES`` + ``ROBOT_REST``: a few train frames, and frames of a held-out sequence to score."""
    from tfseg.data import open_dataset
    from tfseg.data.remap import merge_classes, subset

    robot = merge_classes(open_dataset("camvid", root, holdout=holdout), ROBOT_CLASSES, rest=ROBOT_REST)
    return subset(robot, {"train": train_images, "val": eval_images})


def robot_fine_tuning(name, steps, *, dataset=None, batch_size=8, crop_size=(128, 160), learning_rate=1e-3,
                      scale_range=(0.75, 1.25), verbose=0):
    """Fine-tune the CamVid zoo model ``name`` to the robot's classes (backbone frozen) and score both ways.

    Returns ``(model, result)``: ``result`` holds the val mean IoU (and per-class IoU) on the held-out
    frames of the fine-tuned model and of the 11-class model's predictions merged into the same classes.
    """
    from tfseg import zoo
    from tfseg.data.pipeline import ExampleSource
    from tfseg.data.remap import class_mapping
    from tfseg.training.evaluate import evaluate_source

    dataset = dataset or robot_dataset()
    card = zoo.card(name)
    held_out = ExampleSource(dataset, "val")
    mapping = class_mapping(card.class_names, ROBOT_CLASSES, rest=ROBOT_REST)
    merged = evaluate_source(merged_class_model(zoo.load(name), mapping), held_out, batch_size=4)
    model = fine_tune(name, dataset, steps=steps, batch_size=batch_size, crop_size=crop_size,
                      learning_rate=learning_rate, scale_range=scale_range, verbose=verbose)
    tuned = evaluate_source(model, held_out, batch_size=4)
    result = {
        "classes": list(dataset.class_names), "steps": steps, "frozen": "backbone",
        "train_images": len(dataset.files("train")), "eval_images": len(held_out),
        "eval_split": dataset.split_notes.get("val", "val"),
        "fine_tuned": {"mean_iou": tuned.scores["mean_iou"], "iou": dict(zip(dataset.class_names, tuned.iou))},
        "merged_11_class": {"mean_iou": merged.scores["mean_iou"], "iou": dict(zip(dataset.class_names, merged.iou))},
    }
    return model, result
