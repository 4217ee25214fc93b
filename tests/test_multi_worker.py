"""Multi-worker training on loopback: one process's weights, restart after a kill, a lost worker."""

from __future__ import annotations

import json
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
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return [
        subprocess.Popen(
            train_command(config_path), cwd=REPO, text=True, stdout=output, stderr=subprocess.STDOUT,
            env=subprocess_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})),
        )
        for index in range(len(ports))
    ]


def finish(workers, timeout=600):
    outputs = []
    for worker in workers:
        output, _ = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, output[-3000:]
        outputs.append(output)
    return outputs


OPTIONS = {"strategy": "multi_worker", "steps": 12, "checkpoint_every": 3}


def test_two_workers_train_as_one_process_with_two_replicas(synthetic_root, tmp_path):
    straight = write_config(tmp_path / "straight.json", tiny_config(synthetic_root, tmp_path / "straight", **OPTIONS))
    chief, other = finish(start_workers(straight, free_ports(2)))
    assert "wrote in" not in other and not (tmp_path / "straight" / ".worker1_scratch").exists()

    # the same global batches on one process with two replicas
    mirrored = write_config(tmp_path / "mirrored.json", tiny_config(
        synthetic_root, tmp_path / "mirrored", strategy="mirrored", logical_cpus=2, steps=12, checkpoint_every=3))
    run_training(mirrored)
    import keras

    import tfseg

    keras.utils.set_random_seed(0)  # what train() does before building the model
    start = tfseg.build_model("unet", 6, base_filters=4, depth=2).get_weights()
    moved = max(float(np.abs(a - b).max()) for a, b in zip(model_weights(tmp_path / "straight" / "model.keras"), start))
    assert moved > 1e-2, "training did not change the weights"
    assert_same_weights(tmp_path / "straight" / "model.keras", tmp_path / "mirrored" / "model.keras")


@pytest.mark.slow  # six worker processes: 50 s
def test_two_workers_both_killed_and_restarted_end_with_the_uninterrupted_weights(synthetic_root, tmp_path):
    straight = write_config(tmp_path / "straight.json", tiny_config(synthetic_root, tmp_path / "straight", **OPTIONS))
    finish(start_workers(straight, free_ports(2)))
    killed = write_config(tmp_path / "killed.json", tiny_config(synthetic_root, tmp_path / "killed", **OPTIONS))
    ports = free_ports(2)
    wait_for_checkpoint_then_kill(start_workers(killed, ports, capture=False), tmp_path / "killed")
    chief, other = finish(start_workers(killed, ports))
    assert "resuming from" in chief
    assert_same_weights(tmp_path / "straight" / "model.keras", tmp_path / "killed" / "model.keras")


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
