"""``train(config)``: ``model.fit`` under a ``tf.distribute`` strategy with DeepLab's recipe.

Chen et al. 2017/2018 (DeepLab v3/v3+) train with SGD + momentum, poly learning rate (power
0.9), weight decay on the convolution kernels, random scale 0.5-2.0, crops and flips, and batch
norm statistics shared across replicas. Here: Keras ``fit`` with callbacks for step checkpoints
(resume at the exact batch), TensorBoard logs, the progress bar and periodic evaluation.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras
import tensorflow as tf

from tfseg.training.checkpoint import StepCheckpoint, checkpoint_manager, remove_worker_folder, restore_latest
from tfseg.training.config import TrainConfig, load_config
from tfseg.training.schedules import PolyDecay
from tfseg.training.strategy import is_chief, make_strategy


def find_backbone(model):
    """The backbone nested in a tfseg model (the layer carrying ``feature_info``), or None."""
    for layer in model.layers:
        if getattr(layer, "feature_info", None):
            return layer
    return None


def batch_norm_layers(model):
    return [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def configure_for_fine_tuning(model, freeze_backbone=False, freeze_batch_norm=False):
    """Freeze the backbone's weights and/or every batch norm (which then uses its moving statistics)."""
    if freeze_backbone:
        backbone = find_backbone(model)
        if backbone is None:
            raise ValueError(f"freeze_backbone: model {model.name!r} has no tfseg backbone to freeze")
        backbone.trainable = False
    if freeze_batch_norm:
        for layer in batch_norm_layers(model):
            layer.trainable = False


def synchronize_batch_norm(model):
    """Batch norm moments computed over the global batch, across replicas (Keras, TF backend)."""
    for layer in batch_norm_layers(model):
        layer.synchronized = True


def short_run_momentum(total_steps, builder_momentum, window_fraction=0.05, floor=0.9):
    """A batch-norm momentum whose averaging window ``1 / (1 - m)`` is at most 5% of the run.

    The builders carry DeepLab's momenta (0.9997: a window of 3,333 steps, made for 30k-step
    runs); after a few hundred steps such moving statistics are still near their initial values
    and inference collapses. Long runs keep the builder's value.
    """
    window = max(total_steps * window_fraction, 1.0 / (1.0 - floor))
    return min(builder_momentum, 1.0 - 1.0 / window)


def set_batch_norm_momentum(model, momentum, total_steps):
    """Apply ``TrainConfig.batch_norm_momentum`` ("auto", None or a number) to every batch norm."""
    if momentum is None:
        return
    for layer in batch_norm_layers(model):
        layer.momentum = short_run_momentum(total_steps, layer.momentum) if momentum == "auto" else float(momentum)


def add_weight_decay(model, weight_decay):
    """L2 on convolution and dense kernels, as slim's ``l2_regularizer(weight_decay)`` (0.5 * wd * |w|^2).

    Depthwise kernels, biases and batch-norm parameters are not decayed (the official DeepLab
    Xception and MobileNetV2 scopes use ``regularize_depthwise=False``).
    """
    regularizer = keras.regularizers.L2(weight_decay / 2.0)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            continue
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.Conv2DTranspose)):
            if getattr(layer, "kernel", None) is not None and layer.kernel.trainable:
                layer.kernel.regularizer = regularizer


def make_optimizer(config, total_steps):
    schedule = PolyDecay(
        config.learning_rate, total_steps, power=config.poly_power,
        end_learning_rate=config.end_learning_rate, warmup_steps=config.warmup_steps,
    )
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=config.momentum)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "depthwise"])
    return optimizer


def build_training_model(config, num_classes, total_steps):
    """The model of ``config`` with its fine-tuning, weight-decay and batch-norm settings applied.

    ``config.pretrained`` (a zoo name) starts from that model's weights; a class count other than
    the card's replaces the classifier and keeps every other weight.
    """
    from tfseg.registry import build_model

    if config.pretrained:
        from tfseg import zoo

        model = zoo.load(config.pretrained, num_classes=num_classes)
    else:
        model = build_model(config.model, num_classes, (None, None, 3), **config.model_options)
    configure_for_fine_tuning(model, config.freeze_backbone, config.freeze_batch_norm)
    set_batch_norm_momentum(model, config.batch_norm_momentum, total_steps)
    if config.optimizer == "sgd" and config.weight_decay:
        add_weight_decay(model, config.weight_decay)
    return model


class TrainingRun:
    """Everything one call of :func:`train` set up: the config, strategy, data, model and paths."""

    def __init__(self, config):
        from tfseg.data import open_dataset
        from tfseg.data.pipeline import ExampleSource, steps_per_epoch

        self.config = config
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy(config.mixed_precision)
        self.strategy = make_strategy(config.strategy, config.logical_cpus)
        self.dataset = open_dataset(config.dataset, config.data_root, **config.dataset_options)
        self.train_source = ExampleSource(self.dataset, config.train_split).load_all()
        self.val_source = None
        if config.val_split:
            self.val_source = ExampleSource(self.dataset, config.val_split).load_all()
        self.steps_per_epoch = steps_per_epoch(len(self.train_source), config.batch_size, config.train_split)
        self.total_steps = int(config.steps or config.epochs * self.steps_per_epoch)
        self.out_dir = Path(config.out_dir)
        self.class_weights = config.class_weights
        if config.class_weights == "median_frequency":
            from tfseg.data.pipeline import median_frequency_weights

            self.class_weights = median_frequency_weights(self.train_source, self.dataset.num_classes)
        self.replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % self.replicas:
            raise ValueError(
                f"batch_size={config.batch_size} must be a multiple of the {self.replicas} replicas of the strategy"
            )


def train(config=None, *, callbacks=(), **overrides):
    """Train as ``config`` says (a ``TrainConfig``, a path to a YAML/JSON file, or None) plus ``overrides``.

    Resumes from the newest checkpoint in ``<out_dir>/checkpoints`` when there is one. Writes
    ``<out_dir>/model.keras``, ``config.json``, TensorBoard logs in ``<out_dir>/logs`` and, when a
    validation split is set, ``<out_dir>/metrics.json``. Returns ``(model, history)``.
    """
    from tfseg.data.pipeline import training_batches
    from tfseg.losses import SparseCrossEntropyWithIgnore

    if not isinstance(config, TrainConfig):
        config = load_config(config, **overrides)
    elif overrides:
        config = load_config(None, **{**config.to_dict(), **overrides})
    keras.utils.set_random_seed(config.seed)
    run = TrainingRun(config)
    chief = is_chief()
    if chief:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        (run.out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2, default=list))

    with run.strategy.scope():
        model = build_training_model(config, run.dataset.num_classes, run.total_steps)
        if run.replicas > 1:
            synchronize_batch_norm(model)
        optimizer = make_optimizer(config, run.total_steps)
        optimizer.build(model.trainable_variables)
        loss = SparseCrossEntropyWithIgnore(ignore_label=run.dataset.ignore_label, class_weights=run.class_weights)
        model.compile(optimizer=optimizer, loss=loss)
        manager = checkpoint_manager(model, optimizer, str(run.out_dir / "checkpoints"))
        restored = restore_latest(manager)
    start_step = int(optimizer.iterations.numpy())
    if restored:
        print(f"resuming from {restored} at step {start_step} of {run.total_steps}", flush=True)

    history = None
    if start_step < run.total_steps:
        stream = training_batches(
            run.train_source, config.batch_size, config.crop_size, seed=config.seed, start_step=start_step,
            scale_range=config.scale_range, flip=config.flip,
        )
        all_callbacks = [StepCheckpoint(manager, optimizer, config.checkpoint_every, run.total_steps)]
        if chief:
            all_callbacks.append(keras.callbacks.TensorBoard(str(run.out_dir / "logs"), update_freq=50))
        if run.val_source is not None and config.eval_every_epochs:
            all_callbacks.append(PeriodicEvaluation(run, config.eval_every_epochs))
        all_callbacks.extend(callbacks)
        initial_epoch = start_step // run.steps_per_epoch
        epochs = initial_epoch + math.ceil((run.total_steps - start_step) / run.steps_per_epoch)
        started = time.time()
        if isinstance(run.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15's fit() pre-builds the model by reducing a distributed batch eagerly, which
            # MultiWorkerMirroredStrategy cannot do (keras-team/keras#20585). Without a recorded
            # strategy Keras skips that step and uses the strategy of the scope fit() runs in.
            model._distribute_strategy = None
            _reduce_metrics_along_a_batch_axis(model)
        with run.strategy.scope():
            history = model.fit(
                stream, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=run.steps_per_epoch,
                callbacks=all_callbacks, shuffle=False, verbose=config.verbose if chief else 0,
            )
        elapsed = time.time() - started
        if chief:
            _append_log(run.out_dir, {"from_step": start_step, "to_step": int(optimizer.iterations.numpy()),
                                      "seconds": round(elapsed, 1)})
    remove_worker_folder(manager)

    if chief:
        model.save(run.out_dir / "model.keras")
        if run.val_source is not None:
            from tfseg.training.evaluate import evaluate_source

            result = evaluate_source(model, run.val_source, batch_size=config.eval_batch_size)
            (run.out_dir / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
            print(result.table(), flush=True)
    return model, history


def _reduce_metrics_along_a_batch_axis(model):
    """Give the scalar logs of ``train_step`` a leading axis of 1.

    Under MultiWorkerMirroredStrategy Keras reduces each log with ``reduce("MEAN", v, axis=0)``,
    which fails on scalars (tensorflow/tensorflow#72388); with the axis the mean is the same number.
    """
    train_step = model.train_step

    def step(data):
        logs = train_step(data)
        return {key: tf.reshape(value, [-1]) if value.shape.rank == 0 else value for key, value in logs.items()}

    model.train_step = step


def _append_log(out_dir, record):
    with open(out_dir / "train_log.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")


class PeriodicEvaluation(keras.callbacks.Callback):
    """Evaluate on the validation split every ``every`` epochs; adds ``val_mean_iou`` etc. to the logs."""

    def __init__(self, run, every):
        super().__init__()
        self.run = run
        self.every = int(every)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        from tfseg.training.evaluate import evaluate_source

        result = evaluate_source(self.model, self.run.val_source, batch_size=self.run.config.eval_batch_size)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in result.scores.items()})
        if is_chief():
            print(f"\nepoch {epoch + 1}: val mean IoU {result.scores['mean_iou']:.4f} "
                  f"pixel accuracy {result.scores['pixel_accuracy']:.4f}", flush=True)
            _append_log(self.run.out_dir, {"epoch": epoch + 1, "step": int(self.model.optimizer.iterations.numpy()),
                                           **{f"val_{k}": v for k, v in result.scores.items()}})
