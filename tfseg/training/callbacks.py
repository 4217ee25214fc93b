"""Keras callbacks of ``tfseg train``: progress over the run's steps, periodic evaluation, the best model."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras

from tfseg.files import write_text
from tfseg.inference.metadata import save_keras_model
from tfseg.training.strategy import is_chief

BEST_MODEL = "best.keras"


def append_log(out_dir, record):
    """One JSON line in ``<out_dir>/train_log.jsonl``."""
    with open(Path(out_dir) / "train_log.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class RunProgress(keras.callbacks.Callback):
    """Progress over the whole run (step ``s`` of ``total``), not Keras's per-epoch bar.

    On a terminal one line is redrawn; otherwise a line is written every ``line_every`` steps.
    """

    def __init__(self, run_checkpoint, total_steps, line_every, stream=None):
        super().__init__()
        self.run_checkpoint = run_checkpoint
        self.total = int(total_steps)
        self.line_every = max(1, int(line_every))
        self.stream = stream or sys.stdout
        self.terminal = self.stream.isatty()

    def on_train_begin(self, logs=None):
        self.start_step = self.run_checkpoint.batches_consumed
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = self.run_checkpoint.batches_consumed
        if not self.terminal and step % self.line_every and step < self.total:
            return
        done = step - self.start_step
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - step) / rate if rate > 0 else 0.0
        loss = (logs or {}).get("loss")
        loss_text = f"  loss {float(loss):.4f}" if loss is not None else ""
        text = (f"step {step}/{self.total}{loss_text}  {rate:.2f} steps/s  elapsed {_duration(elapsed)}"
                f"  left {_duration(remaining)}")
        if self.terminal:
            self.stream.write("\r" + text + ("\n" if step >= self.total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def on_train_end(self, logs=None):
        if self.terminal:
            self.stream.write("\n")
            self.stream.flush()


class PeriodicEvaluation(keras.callbacks.Callback):
    """Score the validation split every ``every_steps`` steps; keep the model with the best mean IoU.

    Adds ``val_mean_iou`` etc. to the logs. The chief writes each result to ``train_log.jsonl``
    and, when the mean IoU beats every earlier one (``best.json`` survives a resume), saves the
    model as ``best.keras`` beside the last checkpoint (other workers save and delete a copy).
    """

    def __init__(self, evaluate, run_checkpoint, out_dir, every_steps, split_name, info=None):
        super().__init__()
        self.info = info
        self.evaluate = evaluate
        self.run_checkpoint = run_checkpoint
        self.out_dir = Path(out_dir)
        self.every = int(every_steps)
        self.split_name = split_name
        best = self.out_dir / "best.json"
        self.best = json.loads(best.read_text())["mean_iou"] if best.is_file() else -1.0

    def on_train_batch_end(self, batch, logs=None):
        step = self.run_checkpoint.batches_consumed
        if step % self.every:
            return
        result = self.evaluate(self.model)
        scores = result.scores
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in scores.items()})
        chief = is_chief()
        line = f"step {step}: {self.split_name} mean IoU {100 * scores['mean_iou']:.2f}"
        if chief:
            append_log(self.out_dir, {"step": step, **{f"val_{k}": v for k, v in scores.items()}})
        if scores["mean_iou"] > self.best:
            self.best = scores["mean_iou"]
            # Every worker saves (under MultiWorkerMirroredStrategy saving takes part in collective ops), the
            # others into their scratch folder.
            scratch = Path(self.run_checkpoint.write_directory)
            target = self.out_dir / BEST_MODEL if chief else scratch / BEST_MODEL
            target.parent.mkdir(parents=True, exist_ok=True)
            save_keras_model(self.model, target, self.info)
            if chief:
                write_text(self.out_dir / "best.json", json.dumps({"step": step, "mean_iou": self.best,
                                                                   "split": self.split_name}))
                line += " (best so far: saved best.keras)"
            else:
                target.unlink()
        if chief:
            print(line, flush=True)
