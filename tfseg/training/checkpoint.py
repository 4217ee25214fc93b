"""Step checkpoints that survive a kill at any moment, on one device or many workers.

A checkpoint holds everything that decides the next batch and the next weights: the model, the
optimizer (with a mixed-precision loss scale), the state of every seed generator (dropout and any
other random layer) and the number of batches consumed. The input stream is a function of that
count (``tfseg.data.pipeline.training_batches``), which is not the optimizer's step counter: a
loss-scale optimizer skips steps with non-finite gradients without counting them, but their
batches were consumed. So a resumed run continues with exactly the batch and the weights an
uninterrupted run would have had.

``tf.train.CheckpointManager`` writes the variables and only then points its ``checkpoint`` file at
the new files, so a process killed in the middle of a save leaves the previous checkpoint valid.
Under ``MultiWorkerMirroredStrategy`` every worker saves (saving may take part in collective ops),
the chief into ``<out_dir>/checkpoints`` and the others into a scratch folder they delete, and every
worker restores from the chief's folder (storage that all workers see), so all start at one step.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from tfseg.training.keras_internals import require
from tfseg.training.strategy import is_chief, task_index

CHECKPOINT_FOLDER = "checkpoints"


def seed_generator_states(model):
    """The state variables of every ``keras.random.SeedGenerator`` in ``model`` (dropout's among them)."""
    return [
        generator.state
        for layer in require(model, "_flatten_layers")(include_self=True, recursive=True)
        for generator in require(layer, "_seed_generators")
    ]


class RunCheckpoint:
    """Saves and restores one training run's state under ``<out_dir>/checkpoints``."""

    def __init__(self, model, optimizer, out_dir, max_to_keep=2):
        out_dir = Path(out_dir)
        self.directory = out_dir / CHECKPOINT_FOLDER
        self.batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches_consumed")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, seeds=seed_generator_states(model), batches=self.batches,
        )
        self.write_directory = self.directory if is_chief() else out_dir / f".worker{task_index()}_scratch"
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.write_directory), max_to_keep=max_to_keep)

    def latest(self):
        return tf.train.latest_checkpoint(str(self.directory))

    def restore(self):
        """Restore the chief's newest checkpoint if there is one; returns its path or None."""
        path = self.latest()
        if path:
            status = self.checkpoint.restore(path)
            try:
                status.assert_existing_objects_matched()
            except AssertionError as error:
                raise ValueError(
                    f"checkpoint {path} does not hold this run's state ({str(error).splitlines()[0]}); it was written "
                    "by another model or an older tfseg: train into a new out_dir, or pass --restart to start over"
                ) from None
        return path

    @property
    def batches_consumed(self):
        return int(self.batches.numpy())

    def save(self):
        self.manager.save(checkpoint_number=self.batches_consumed)

    def remove_scratch(self):
        if not is_chief() and self.write_directory.is_dir():
            shutil.rmtree(self.write_directory, ignore_errors=True)


class StepCheckpoint(keras.callbacks.Callback):
    """Count the batches consumed; save every ``every`` batches and at the end; stop at ``total_steps``."""

    def __init__(self, run_checkpoint, every, total_steps):
        super().__init__()
        self.run_checkpoint = run_checkpoint
        self.every = int(every)
        self.total_steps = int(total_steps)

    def on_train_batch_end(self, batch, logs=None):
        self.run_checkpoint.batches.assign_add(1)
        step = self.run_checkpoint.batches_consumed
        if step % self.every == 0 or step >= self.total_steps:
            self.run_checkpoint.save()
        if step >= self.total_steps:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        latest = self.run_checkpoint.manager.latest_checkpoint
        if latest is None or not latest.endswith(f"-{self.run_checkpoint.batches_consumed}"):
            self.run_checkpoint.save()


# Keys that decide which batches and weights a run produces. A restart with any of them changed is
# refused; data_root may move, and the execution keys (strategy, checkpoint_every, evaluation, verbosity,
# out_dir) may change. steps/epochs may change with extend=True.
LENGTH_KEYS = ("steps", "epochs")
RUN_KEYS = (
    "model", "model_options", "pretrained", "pretrained_weights", "dataset", "dataset_options", "train_split",
    "crop_size", "batch_size",
    "scale_range", "flip", "color_jitter", "class_weights", "rare_class_crop", "label_smoothing", *LENGTH_KEYS, "optimizer",
    "learning_rate", "end_learning_rate", "poly_power", "warmup_steps", "momentum", "weight_decay",
    "decoupled_weight_decay", "freeze_backbone", "freeze_batch_norm", "batch_norm_momentum", "mixed_precision",
    "initial_loss_scale", "jit_compile", "seed",
)


def changed_run_keys(previous, current):
    """``{key: (old, new)}`` for the run-deciding keys whose values differ (JSON-normalised)."""

    def normal(value):
        return json.loads(json.dumps(value, default=list))

    return {
        key: (previous.get(key), current.get(key))
        for key in RUN_KEYS
        if key in previous and normal(previous.get(key)) != normal(current.get(key))
    }


DATASET_FINGERPRINT = "dataset.json"  # in the checkpoints folder: the training files the checkpoints were trained on


def check_resumable(out_dir, config_dict, restart=False, extend=False, fingerprint=None):
    """Decide what a start with ``config_dict`` in ``out_dir`` does: "fresh", "resume" or "restart".

    Raises ``ValueError`` naming the keys when ``out_dir`` holds checkpoints of a run with another
    configuration, or naming the files when its training files changed (``fingerprint``:
    ``ExampleSource.fingerprint()``), unless ``restart`` (start over) or ``extend`` (continue: to a
    new ``steps``/``epochs``, or on the changed files) says what to do.
    """
    from tfseg.data.pipeline import fingerprint_changes

    out_dir = Path(out_dir)
    if tf.train.latest_checkpoint(str(out_dir / CHECKPOINT_FOLDER)) is None:
        return "fresh"
    if restart:
        return "restart"
    saved = out_dir / "config.json"
    changed = changed_run_keys(json.loads(saved.read_text()), config_dict) if saved.is_file() else {}
    if changed and not (extend and set(changed) <= set(LENGTH_KEYS)):
        described = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
        hint = (
            "pass --restart to start over (its checkpoints are deleted)"
            + (", or --extend to continue it to the new length" if set(changed) <= set(LENGTH_KEYS) else "")
            + ", or train into another --out"
        )
        raise ValueError(f"{out_dir} holds checkpoints of a run with another configuration ({described}); {hint}")
    saved_fingerprint = out_dir / CHECKPOINT_FOLDER / DATASET_FINGERPRINT
    if fingerprint is not None and saved_fingerprint.is_file() and not extend:
        difference = fingerprint_changes(json.loads(saved_fingerprint.read_text()), fingerprint)
        if difference:
            raise ValueError(
                f"the training files changed since the checkpoints in {out_dir} were written ({difference}); "
                "pass --extend to continue on the files as they are now, --restart to start over, or restore the files"
            )
    return "resume"


def save_fingerprint(out_dir, fingerprint):
    """Record the run's training files beside its checkpoints (chief only)."""
    from tfseg.files import write_text

    if is_chief():
        folder = Path(out_dir) / CHECKPOINT_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / DATASET_FINGERPRINT, json.dumps(fingerprint))


# What a run writes in its out_dir: a restart removes all of it (nothing else in the folder).
RUN_FILES = (CHECKPOINT_FOLDER, "logs", "best.keras", "best.json", "model.keras", "metrics.json", "train_log.jsonl",
             "config.json", "class_weights.json")


def remove_run_files(out_dir):
    """Delete what an earlier run wrote in ``out_dir`` (:data:`RUN_FILES`; chief only: the folder is shared)."""
    if not is_chief():
        return
    for name in RUN_FILES:
        path = Path(out_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
