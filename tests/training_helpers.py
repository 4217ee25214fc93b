"""Shared pieces of the training tests: a tiny synthetic dataset and configs, subprocess runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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

    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
