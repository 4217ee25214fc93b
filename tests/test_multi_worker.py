"""Multi-worker training on loopback: one process's weights, restart after a kill, a lost worker."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import numpy as np
import pytest

from training_helpers import (
    REPO, assert_same_weights, free_ports, model_weights, run_training, subprocess_env, tiny_config,
    train_command, wait_for_checkpoint_then_kill, write_config,
)


def start_workers(config_path, ports, capture=True):
    """One ``tfseg train`` process per worker of a loopback cluster, each with its TF_CONFIG."""
    return start_workers_with_configs([config_path] * len(ports), ports, capture)


def start_workers_with_configs(config_paths, ports, capture=True):
    """Worker ``i`` of a loopback cluster trains with ``config_paths[i]``."""
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return [
        subprocess.Popen(
            train_command(path), cwd=REPO, text=True, stdout=output, stderr=subprocess.STDOUT,
            env=subprocess_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})),
        )
        for index, path in enumerate(config_paths)
    ]


def finish(workers, timeout=600):
    outputs = []
    for worker in workers:
        output, _ = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, output[-3000:]
        outputs.append(output)
    return outputs


OPTIONS = {"strategy": "multi_worker", "steps": 12, "checkpoint_every": 3}
# 16 training images in batches of 4 (4 steps per epoch): periodic evaluation, on every worker, at step 12.
EVALUATION = {"val_split": "val", "eval_every_epochs": 3}


def test_two_workers_killed_and_restarted_train_as_one_process_with_two_replicas(synthetic_root, tmp_path):
    """Killed after a mid-epoch checkpoint, restarted, with periodic evaluation: one process's weights."""
    mirrored = write_config(tmp_path / "mirrored.json", tiny_config(
        synthetic_root, tmp_path / "mirrored", strategy="mirrored", logical_cpus=2, steps=12, checkpoint_every=3))
    run_training(mirrored)
    killed = write_config(tmp_path / "killed.json", tiny_config(synthetic_root, tmp_path / "killed", **OPTIONS,
                                                                **EVALUATION))
    ports = free_ports(2)
    wait_for_checkpoint_then_kill(start_workers(killed, ports, capture=False), tmp_path / "killed")
    chief, other = finish(start_workers(killed, ports))
    resumed_at = int(re.search(r"resuming from \S+ at step (\d+) of 12", chief).group(1))
    assert 0 < resumed_at < 12 and "wrote in" not in other
    assert not (tmp_path / "killed" / ".worker1_scratch").exists()
    logged = [json.loads(line) for line in (tmp_path / "killed" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "val_mean_iou" in r] == [12]
    assert json.loads((tmp_path / "killed" / "best.json").read_text())["step"] == 12
    assert (tmp_path / "killed" / "best.keras").is_file() and "step 12: synthetic:val mean IoU" in chief

    import keras

    import tfseg

    keras.utils.set_random_seed(0)  # what train() does before building the model
    start = tfseg.build_model("unet", 6, base_filters=4, depth=2).get_weights()
    moved = max(float(np.abs(a - b).max()) for a, b in zip(model_weights(tmp_path / "killed" / "model.keras"), start))
    assert moved > 1e-2, "training did not change the weights"
    assert_same_weights(tmp_path / "mirrored" / "model.keras", tmp_path / "killed" / "model.keras")


def test_when_a_worker_dies_the_other_stops_within_bounded_time_saying_what_to_do(synthetic_root, tmp_path):
    config = write_config(tmp_path / "run.json", tiny_config(
        synthetic_root, tmp_path / "run", strategy="multi_worker", steps=100000, checkpoint_every=3))
    chief, other = start_workers(config, free_ports(2))
    index = tmp_path / "run" / "checkpoints" / "checkpoint"
    deadline = time.time() + 300
    while not index.is_file() and time.time() < deadline and chief.poll() is None:
        time.sleep(0.05)
    other.send_signal(signal.SIGKILL)
    killed_at = time.time()
    output, _ = chief.communicate(timeout=240)
    other.wait(timeout=60)
    assert chief.returncode not in (0, None), output[-3000:]
    assert "restart every worker with the same command" in output, output[-3000:]
    assert time.time() - killed_at < 180

    # Restarted with out_dir not shared (worker 1 sees no checkpoint): both refuse, saying so in one line.
    lone = write_config(tmp_path / "lone.json", tiny_config(
        synthetic_root, tmp_path / "lone", strategy="multi_worker", steps=100000, checkpoint_every=3))
    ports = free_ports(2)
    workers = start_workers_with_configs([config, lone], ports)
    for worker in workers:
        output, _ = worker.communicate(timeout=240)
        errors = [line for line in output.splitlines() if line.startswith("tfseg train: error")]
        assert worker.returncode == 2 and len(errors) == 1, output[-3000:]
        assert "the workers would resume at different steps [0, " in errors[0] and "one shared out_dir" in errors[0]


def test_a_worker_that_dies_before_joining_ends_the_other_within_the_join_timeout(synthetic_root, tmp_path):
    """Worker 1 never starts (it died during set-up): worker 0 stops after cluster_join_timeout, saying what to do."""
    config = write_config(tmp_path / "run.json", tiny_config(synthetic_root, tmp_path / "run", cluster_join_timeout=3,
                                                              **OPTIONS))
    started = time.time()
    (chief,) = start_workers_with_configs([config], free_ports(2))
    output, _ = chief.communicate(timeout=120)
    assert chief.returncode not in (0, None) and time.time() - started < 60, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("tfseg train: error")]
    assert len(errors) == 1 and "did not finish setting up within 3 s" in errors[0], output[-3000:]
    assert "restart every worker with the same command" in errors[0]
