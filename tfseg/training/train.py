"""``train(config)``: ``model.fit`` under a ``tf.distribute`` strategy with DeepLab's recipe.

Chen et al. 2017/2018 (DeepLab v3/v3+) train with SGD + momentum, poly learning rate (power
0.9), weight decay on the convolution kernels, random scale 0.5-2.0, crops and flips, and batch
norm statistics shared across replicas. Here: Keras ``fit`` with callbacks for step checkpoints
(a killed run resumes at the exact batch, see ``tfseg.training.checkpoint``), TensorBoard logs,
progress over the run's steps and periodic evaluation that keeps the best model.

The loss is normalised by the valid pixels of the global batch (``tfseg.losses``), so one device
and N replicas compute the same gradient; batch norm is synchronised across replicas.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

from tfseg.data.base import DamagedFile
from tfseg.files import write_text
from tfseg.inference.metadata import ModelInfo, info_of, save_keras_model
from tfseg.training.callbacks import BEST_MODEL, PeriodicEvaluation, RunProgress, append_log
from tfseg.training.checkpoint import (
    CHECKPOINT_FOLDER, RunCheckpoint, StepCheckpoint, check_resumable, remove_run_files, save_fingerprint,
)
from tfseg.training.config import TrainConfig, load_config
from tfseg.training.model_setup import (  # noqa: F401  (configure_for_fine_tuning, find_backbone: public here)
    build_training_model, configure_for_fine_tuning, find_backbone, make_optimizer, synchronize_batch_norm,
)
from tfseg.training.keras_internals import require
from tfseg.training.strategy import is_chief, make_strategy, strategy_name, tf_config_workers

# Errors a collective raises when a peer worker has gone (MultiWorkerMirroredStrategy's health
# check aborts pending collectives with UNAVAILABLE within about a minute of a worker's death).
PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError)


class InvalidRun(ValueError):
    """The configuration, data or resume cannot run; raised before anything was written or deleted."""


class TrainingStopped(RuntimeError):
    """A run that started ended early for a reason outside the code (data, cluster); its checkpoints are kept."""


class WorkerLost(TrainingStopped):
    """A worker of a multi-worker run stopped; every worker must be restarted."""


class WorkersOutOfStep(TrainingStopped):
    """The workers of a multi-worker run would resume at different steps (their out_dir is not one shared folder)."""


class DiskFull(TrainingStopped):
    """A write of the run found no space left (every file is written whole or not at all)."""


NO_SPACE = "No space left on device"


class DamagedData(TrainingStopped):
    """A training or validation file failed to decode during the run."""


# Errors of bad input while a run is checked and set up (nothing written yet): train() re-raises them as InvalidRun.
SETUP_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError)


class TrainingRun:
    """What one call of :func:`train` sets up before any work: the config, data, strategy and paths.

    Opening the dataset checks its layout and every file's head and tail (a missing, foreign or
    truncated file fails here, naming it); no pixel is decoded until the input stream needs it.
    """

    def __init__(self, config, restart=False, extend=False):
        from tfseg.data import open_dataset
        from tfseg.data.pipeline import steps_per_epoch

        self.config = config
        self.out_dir = Path(config.out_dir)
        self.dataset = open_dataset(config.dataset, config.data_root, **config.dataset_options)
        self.skipped = []  # (path, problem) of the files left out with skip_damaged
        self.train_source = self._source(config.train_split)
        self.val_source = self._source(config.val_split) if config.val_split else None
        self.steps_per_epoch = steps_per_epoch(len(self.train_source), config.batch_size, config.train_split)
        self.total_steps = int(config.steps or config.epochs * self.steps_per_epoch)
        self.fingerprint = self.train_source.fingerprint()
        self.start = check_resumable(self.out_dir, config.to_dict(), restart=restart, extend=extend,
                                     fingerprint=self.fingerprint)

    def _source(self, split):
        from tfseg.data.pipeline import ExampleSource

        source = ExampleSource(self.dataset, split)
        if not self.config.skip_damaged:
            return source.check_files()
        self.skipped.extend(source.drop_damaged())
        if not len(source):
            raise ValueError(f"every file of {self.dataset.name}:{split} is damaged (first: {self.skipped[0][0]})")
        return source

    def skipped_text(self):
        """'skipped 2 damaged file(s) (first: PATH is truncated ...)', or '' when none was."""
        if not self.skipped:
            return ""
        path, problem = self.skipped[0]
        return f"skipped {len(self.skipped)} damaged file(s) (skip_damaged; first: {path} {problem})"

    def split_name(self, split):
        note = self.dataset.split_notes.get(split)
        return f"{self.dataset.name}:{split}" + (f" ({note})" if note else "")

    def class_weights(self):
        """The configured class weights; a named weighting is counted on the label maps once per
        training-file fingerprint and kept in ``<out_dir>/class_weights.json`` (:meth:`save_class_weights`)."""
        if not isinstance(self.config.class_weights, str):
            return self.config.class_weights
        from tfseg.data.pipeline import CLASS_WEIGHTINGS, fingerprint_digest

        key = {"weighting": self.config.class_weights, "num_classes": self.dataset.num_classes,
               "fingerprint": fingerprint_digest(self.fingerprint)}
        cache = self.out_dir / "class_weights.json"
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if {k: saved.get(k) for k in key} == key:
                return saved["weights"]
        weights = CLASS_WEIGHTINGS[self.config.class_weights](self.train_source, self.dataset.num_classes)
        self._computed_class_weights = {**key, "weights": weights}
        return weights

    def rare_class_crop(self):
        """None, or ``(probability, class priority)`` for ``rare_class_crop``: the median-frequency weights."""
        if not self.config.rare_class_crop:
            return None
        from tfseg.data.pipeline import median_frequency_weights

        return float(self.config.rare_class_crop), median_frequency_weights(self.train_source, self.dataset.num_classes)

    def save_class_weights(self):
        computed = getattr(self, "_computed_class_weights", None)
        if computed is not None and is_chief():
            write_text(self.out_dir / "class_weights.json", json.dumps(computed))


def train(config=None, *, callbacks=(), restart=False, extend=False, **overrides):
    """Train as ``config`` says (a ``TrainConfig``, a path to a YAML/JSON file, or None) plus ``overrides``.

    Resumes from the newest checkpoint in ``<out_dir>/checkpoints`` when there is one and the
    configuration and training files are the run's (a changed key or file is refused, naming it);
    ``restart=True`` deletes the old run's files and starts over, ``extend=True`` continues a run
    whose ``steps``/``epochs`` grew or whose training files changed. Everything that can be refused
    (config, data, resume, strategy, model) is checked before a file is written or deleted, and
    raises ``InvalidRun``. Writes ``<out_dir>/model.keras`` (with the dataset's classes and palette
    inside), ``config.json``, TensorBoard logs in ``<out_dir>/logs``, with a validation split
    ``metrics.json`` and, with periodic evaluation, ``best.keras``; each file is renamed into place
    whole. The global mixed-precision policy is left as it was. Returns ``(model, history)``.
    """
    try:
        if not isinstance(config, TrainConfig):
            config = load_config(config, **overrides)
        elif overrides:
            config = load_config(None, **{**config.to_dict(), **overrides})
        run = TrainingRun(config, restart=restart, extend=extend)
    except SETUP_ERRORS as error:
        raise InvalidRun(str(error)) from error
    policy = keras.mixed_precision.global_policy()
    try:
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy(config.mixed_precision)
        return _train(run, callbacks)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _set_up(run):
    """Strategy, class weights, model, optimizer and loss: every check that can fail, nothing written."""
    from tfseg.losses import SparseCrossEntropyWithIgnore

    config = run.config
    strategy = make_strategy(config.strategy, config.logical_cpus)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"batch_size={config.batch_size} must be a multiple of the "
                         f"{strategy.num_replicas_in_sync} replicas of the strategy")
    class_weights = run.class_weights()
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_training_model(config, run.dataset.num_classes, run.total_steps)
        if strategy.num_replicas_in_sync > 1:
            synchronize_batch_norm(model)
        optimizer = make_optimizer(config, run.total_steps, model)
        optimizer.build(model.trainable_variables)
        loss = SparseCrossEntropyWithIgnore(ignore_label=run.dataset.ignore_label, class_weights=class_weights,
                                            label_smoothing=config.label_smoothing)
        model.compile(optimizer=optimizer, loss=loss, jit_compile=config.jit_compile)
    return strategy, model, optimizer


def _train(run, extra_callbacks):
    try:
        return _train_steps(run, extra_callbacks)
    except PEER_FAILURES as error:  # a worker died while the cluster set up, restored or checked its step
        if tf_config_workers() < 2:
            raise
        raise worker_lost(error, run.out_dir / CHECKPOINT_FOLDER) from None
    except (OSError, tf.errors.OpError) as error:
        full = error.errno in (errno.ENOSPC, errno.EDQUOT) if isinstance(error, OSError) else NO_SPACE in str(error)
        if not full:
            raise
        latest = tf.train.latest_checkpoint(str(run.out_dir / CHECKPOINT_FOLDER))
        raise DiskFull(
            f"the disk of {run.out_dir} is full ({getattr(error, 'filename', None) or NO_SPACE}); "
            f"{'the last checkpoint ' + latest if latest else 'no checkpoint'} and the files written whole before "
            "are kept: free space, then run the same command to resume"
        ) from None


def _train_steps(run, extra_callbacks):
    from tfseg.data.pipeline import training_batches

    config = run.config
    with cluster_watchdog(config.cluster_join_timeout, run.out_dir / CHECKPOINT_FOLDER):
        try:
            strategy, model, optimizer = _set_up(run)
        except SETUP_ERRORS as error:
            raise InvalidRun(str(error)) from error
        chief = is_chief()
        # Checked: from here on the run acts.
        if run.start == "restart":
            remove_run_files(run.out_dir)
        if chief:
            run.out_dir.mkdir(parents=True, exist_ok=True)
            write_text(run.out_dir / "config.json", json.dumps(config.to_dict(), indent=2, default=list))
            save_fingerprint(run.out_dir, run.fingerprint)
            run.save_class_weights()
        with strategy.scope():
            state = RunCheckpoint(model, optimizer, run.out_dir)
            if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
                check_workers_restore_one_step(strategy, None if run.start == "restart" else state.latest())
            restored = state.restore() if run.start != "restart" else None
    start_step = state.batches_consumed
    info = ModelInfo.from_dataset(run.dataset, config.dataset_options, source="tfseg train",
                                  protocol=(info_of(model) or ModelInfo()).protocol)
    if chief and config.verbose:
        _describe_start(run, model, strategy)
    if chief and run.skipped:
        print(run.skipped_text(), flush=True)
    if chief and restored:
        print(f"resuming from {restored} at step {start_step} of {run.total_steps}", flush=True)

    history = None
    if start_step < run.total_steps:
        stream = training_batches(
            run.train_source, config.batch_size, config.crop_size, seed=config.seed, start_step=start_step,
            scale_range=config.scale_range, flip=config.flip, color_jitter=config.color_jitter,
            rare_class=run.rare_class_crop(),
        )
        all_callbacks = [StepCheckpoint(state, config.checkpoint_every, run.total_steps)]
        if chief:
            all_callbacks.append(keras.callbacks.TensorBoard(str(run.out_dir / "logs"), update_freq=50))
            if config.verbose:
                line_every = run.steps_per_epoch if config.verbose == 2 else max(1, run.total_steps // 50)
                all_callbacks.append(RunProgress(state, run.total_steps, line_every))
        if run.val_source is not None and config.eval_every_epochs:
            all_callbacks.append(PeriodicEvaluation(
                lambda m: _evaluate(m, run.val_source, config), state, run.out_dir,
                config.eval_every_epochs * run.steps_per_epoch, run.split_name(config.val_split), info,
            ))
        all_callbacks.extend(extra_callbacks)
        initial_epoch = start_step // run.steps_per_epoch
        epochs = initial_epoch + math.ceil((run.total_steps - start_step) / run.steps_per_epoch)
        started = time.time()
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15's fit() pre-builds the model by reducing a distributed batch eagerly, which
            # MultiWorkerMirroredStrategy cannot do (keras-team/keras#20585). Without a recorded
            # strategy Keras skips that step and uses the strategy of the scope fit() runs in.
            forget_distribution_strategy(model)
            _reduce_metrics_along_a_batch_axis(model)
        stopped = None
        try:
            with strategy.scope():
                history = model.fit(
                    stream, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=run.steps_per_epoch,
                    callbacks=all_callbacks, shuffle=False, verbose=0,
                )
        except (tf.errors.OpError, DamagedFile) as error:
            stopped = _stopped(error, strategy, state, run)
            if stopped is None:
                raise
        if stopped is not None:
            # Free fit()'s frames and input stream now: left to the interpreter's exit, the stream's threads
            # meet a half-finalised interpreter (hangs, or C++ 'terminate called without an active exception').
            del stream, all_callbacks
            gc.collect()
            raise stopped
        if chief:
            append_log(run.out_dir, {"from_step": start_step, "to_step": state.batches_consumed,
                                     "optimizer_steps": int(optimizer.iterations.numpy()),
                                     "seconds": round(time.time() - started, 1)})
    state.remove_scratch()

    if chief:
        save_keras_model(model, run.out_dir / "model.keras", info)
        written = ["model.keras", "config.json", "checkpoints/", "logs/", "train_log.jsonl"]
        if run.val_source is not None:
            result = _evaluate_or_stop(model, run.val_source, config, state)
            write_text(run.out_dir / "metrics.json", json.dumps(result.to_dict(), indent=2))
            written.append("metrics.json")
            if config.verbose:
                print(f"final model on {run.split_name(config.val_split)}:", flush=True)
                print(result.table(), flush=True)
        if (run.out_dir / BEST_MODEL).is_file():
            written.append(f"{BEST_MODEL} ({json.loads((run.out_dir / 'best.json').read_text())})")
        if config.verbose:
            print(f"wrote in {run.out_dir}: {', '.join(written)}", flush=True)
        if run.skipped:
            print(run.skipped_text(), flush=True)
    return model, history


def _stopped(error, strategy, state, run):
    """The ``TrainingStopped`` an error of ``fit`` means (a damaged file, a lost worker), or None."""
    failures = [s.failure for s in (run.train_source, run.val_source) if s is not None and s.failure is not None]
    if isinstance(error, DamagedFile) or failures:
        latest = state.latest()
        kept = f"the last checkpoint {latest} is kept" if latest else "no checkpoint was written yet"
        return DamagedData(f"{failures[0] if failures else error}; {kept}: replace the file, then run the same "
                           "command (with --extend if the files changed)")
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and isinstance(error, PEER_FAILURES):
        return worker_lost(error, state.directory)
    return None


def worker_lost(error, directory):
    return WorkerLost(
        f"another worker of the cluster stopped ({_cause(error)}); restart every worker with the same command and "
        f"TF_CONFIG: each resumes from the last checkpoint in {directory}"
    )


def _evaluate_or_stop(model, source, config, state):
    try:
        return _evaluate(model, source, config)
    except DamagedFile as error:
        raise DamagedData(f"{error}; the last checkpoint {state.latest()} is kept") from None


# A watchdog process: unless its parent closes stdin within the time given, it prints the message and
# stops the parent (blocked in TensorFlow's C++ with the GIL held, the parent cannot time itself out).
# TensorFlow's coordination service keeps SIGTERM waiting, so SIGKILL follows.
_WATCHDOG = (
    "import os, select, signal, sys, time\n"
    "if not select.select([sys.stdin], [], [], float(sys.argv[2]))[0]:\n"
    "    print(sys.argv[3], file=sys.stderr, flush=True)\n"
    "    os.kill(int(sys.argv[1]), signal.SIGTERM)\n"
    "    time.sleep(2)\n"
    "    os.kill(int(sys.argv[1]), signal.SIGKILL)\n"
)


@contextlib.contextmanager
def cluster_watchdog(seconds, directory):
    """In a cluster, stop this process (one line, SIGTERM, SIGKILL) unless the block ends within ``seconds``.

    TensorFlow waits an hour for a worker that never joins the cluster, and a worker that dies while
    the others set up or restore can leave them blocked; this bounds both.
    """
    if tf_config_workers() < 2 or not seconds:
        yield
        return
    message = (f"tfseg train: error: the cluster did not finish setting up within {seconds:g} s "
               "(cluster_join_timeout): a worker did not join or stopped; restart every worker with the same "
               f"command and TF_CONFIG: each resumes from the last checkpoint in {directory}")
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), message],
                                stdin=subprocess.PIPE)
    try:
        yield
    finally:
        watchdog.stdin.close()
        watchdog.wait()


def check_workers_restore_one_step(strategy, checkpoint):
    """Raise ``WorkersOutOfStep`` unless every worker of ``strategy`` is about to restore the step of ``checkpoint``.

    One collective gather of each worker's step (``ckpt-N`` holds step N; no checkpoint is step 0),
    before any worker restores: a worker that does not see the chief's checkpoints would start at
    another step and train other weights.
    """
    step = int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0

    @tf.function
    def steps():
        return strategy.run(lambda: tf.constant([step], tf.int64))

    restored = sorted(set(strategy.gather(steps(), axis=0).numpy().tolist()))
    if len(restored) > 1:
        raise WorkersOutOfStep(
            f"the workers would resume at different steps {restored} (this worker: {step}, from "
            f"{checkpoint or 'no checkpoint'}); every worker must see the chief's checkpoints: give them one shared "
            "out_dir, then restart every worker"
        )


def _cause(error):
    """The informative line of a collective's error (which tasks stopped), not 'Graph execution error'."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "unhealthy" in line or "is down" in line or "aborted" in line:
            return line
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"


def _evaluate(model, source, config):
    from tfseg.training.evaluate import evaluate_source

    return evaluate_source(model, source, batch_size=config.eval_batch_size, scales=config.eval_scales)


def _describe_start(run, model, strategy):
    config = run.config
    what = config.pretrained or config.model
    if config.pretrained_weights:
        what += f" (weights {config.pretrained_weights})"
    options = f" {json.dumps(config.model_options)}" if config.model_options and not config.pretrained else ""
    epochs = run.total_steps / run.steps_per_epoch
    print(
        f"tfseg train: {what}{options}, {model.count_params():,} parameters\n"
        f"  data: {run.split_name(config.train_split)}, {len(run.train_source)} images, "
        f"{run.dataset.num_classes} classes; validation: "
        f"{run.split_name(config.val_split) if config.val_split else 'none'}\n"
        f"  schedule: {run.total_steps} steps of batch {config.batch_size} ({epochs:.1f} epochs), crops "
        f"{config.crop_size[0]}x{config.crop_size[1]}, {config.optimizer} at {config.learning_rate:g}"
        f"{', ' + config.mixed_precision if config.mixed_precision else ''}\n"
        f"  strategy: {strategy_name(strategy)}; writing to {run.out_dir}",
        flush=True,
    )


def forget_distribution_strategy(model):
    """Clear the strategy Keras recorded on ``model`` at build time (a private attribute: checked, not guessed)."""
    require(model, "_distribute_strategy")
    model._distribute_strategy = None


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
