"""Step checkpoints that survive a kill at any moment.

``tf.train.CheckpointManager`` writes the model's and the optimizer's variables (the step counter
included) and only then points its ``checkpoint`` file at the new files, so a process killed in
the middle of a save leaves the previous checkpoint valid. Keras's ``BackupAndRestore`` resumes
at the start of the epoch it was in and repeats that epoch's batches; here the input stream is a
function of the global step (``tfseg.data.pipeline.training_batches``), so a resumed run continues
with exactly the batch an uninterrupted run would have taken next.
"""

from __future__ import annotations

import os
import tempfile

import keras
import tensorflow as tf

from tfseg.training.strategy import is_chief


def checkpoint_manager(model, optimizer, directory, max_to_keep=2):
    """A manager for ``model`` + ``optimizer``; non-chief workers write to a throw-away folder."""
    if not is_chief():
        directory = tempfile.mkdtemp(prefix="tfseg_worker_ckpt_")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)


def restore_latest(manager):
    """Restore the newest checkpoint if there is one; returns its path or None."""
    path = manager.latest_checkpoint
    if path:
        manager.checkpoint.restore(path).assert_existing_objects_matched()
    return path


class StepCheckpoint(keras.callbacks.Callback):
    """Save every ``every`` optimizer steps and at the end of training; stop at ``total_steps``."""

    def __init__(self, manager, optimizer, every, total_steps):
        super().__init__()
        self.manager = manager
        self.optimizer = optimizer
        self.every = int(every)
        self.total_steps = int(total_steps)

    def _step(self):
        return int(self.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if step % self.every == 0 or step >= self.total_steps:
            self.manager.save(checkpoint_number=step)
        if step >= self.total_steps:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        step = self._step()
        latest = self.manager.latest_checkpoint
        if latest is None or not latest.endswith(f"-{step}"):
            self.manager.save(checkpoint_number=step)


def remove_worker_folder(manager):
    if not is_chief() and os.path.isdir(manager.directory):
        tf.io.gfile.rmtree(manager.directory)
