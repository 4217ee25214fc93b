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

    model = load(name, num_classes=dataset.num_classes)
    configure_for_fine_tuning(model, freeze_backbone=freeze_backbone)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=1e-4),
                  loss=SparseCrossEntropyWithIgnore(ignore_label=dataset.ignore_label))
    train = ExampleSource(dataset, "train").load_all()
    stream = training_batches(train, batch_size, tuple(crop_size), seed=seed, scale_range=scale_range)
    model.fit(stream, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=verbose)
    return model
