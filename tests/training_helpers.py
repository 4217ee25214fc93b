"""Shared pieces of the training tests: a tiny synthetic dataset and configs, subprocess runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def tiny_config(data_root, out_dir, **overrides):
    """A U-Net of a few thousand parameters on 32x32 crops of the synthetic set: seconds per run."""
    config = {
        "model": "unet",
        "model_options": {"base_filters": 4, "depth": 2},
        "dataset": "synthetic",
        "data_root": str(data_root),
        "crop_size": [32, 32],
        "batch_size": 4,
        "steps": 12,
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "checkpoint_every": 4,
        "val_split": None,
        "out_dir": str(out_dir),
        "verbose": 0,
    }
    config.update(overrides)
    return config


def write_config(path, config):
    Path(path).write_text(json.dumps(config))
    return path


def subprocess_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def train_command(config_path):
    return [sys.executable, "-m", "tfseg.cli", "train", "--config", str(config_path)]


def run_training(config_path, timeout=300, **env):
    result = subprocess.run(train_command(config_path), capture_output=True, text=True, timeout=timeout,
                            env=subprocess_env(**env), cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def model_weights(path):
    import keras

    import tfseg  # noqa: F401  (registers tfseg's layers for loading)

    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for_checkpoint_then_kill(processes, out_dir, timeout=300):
    """SIGKILL every process once ``out_dir/checkpoints`` names a checkpoint; assert they were killed."""
    index = Path(out_dir) / "checkpoints" / "checkpoint"
    deadline = time.time() + timeout
    while time.time() < deadline and all(p.poll() is None for p in processes):
        if index.is_file() and "ckpt-" in index.read_text():
            break
        time.sleep(0.02)
    for process in processes:
        process.send_signal(signal.SIGKILL)
    for process in processes:
        assert process.wait(timeout=60) == -signal.SIGKILL, "a run ended before it could be killed"


def start_training(config_path, **env):
    return subprocess.Popen(train_command(config_path), env=subprocess_env(**env), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def assert_same_weights(a, b, rtol=1e-5, atol=1e-6):
    a, b = model_weights(a), model_weights(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def run_log(out_dir):
    """The records of ``out_dir/train_log.jsonl``."""
    return [json.loads(line) for line in (Path(out_dir) / "train_log.jsonl").read_text().splitlines()]
