"""Choosing the ``tf.distribute`` strategy: automatic, or named."""

from __future__ import annotations

import json
import os

import tensorflow as tf


def split_cpu(count):
    """Expose the CPU as ``count`` logical devices (before TensorFlow initialises its devices)."""
    cpus = tf.config.list_physical_devices("CPU")
    configured = tf.config.get_logical_device_configuration(cpus[0])
    if configured and len(configured) == count:
        return
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)


def tf_config_workers():
    """Number of workers (chief included) in ``$TF_CONFIG``, 0 when it is unset."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
    return len(cluster.get("worker", ())) + len(cluster.get("chief", ()))


def make_strategy(name="auto", logical_cpus=0):
    """``auto``: TPUStrategy when ``$TPU_NAME`` is set, MultiWorkerMirrored when ``$TF_CONFIG`` names
    several workers, Mirrored over the GPUs when there are several, else the default strategy.
    """
    if logical_cpus and logical_cpus > 1:
        split_cpu(logical_cpus)
    if name == "auto":
        if os.environ.get("TPU_NAME"):
            name = "tpu"
        elif tf_config_workers() > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1 or (logical_cpus and logical_cpus > 1):
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if tf_config_workers() < 1:
            raise ValueError("strategy 'multi_worker' needs TF_CONFIG describing the cluster and this task")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"strategy={name!r}; valid: auto, default, mirrored, multi_worker, tpu")


def task_index():
    """This process's task index in ``$TF_CONFIG`` (0 outside a cluster)."""
    raw = os.environ.get("TF_CONFIG")
    return int(json.loads(raw).get("task", {}).get("index", 0)) if raw else 0


def strategy_name(strategy):
    """A short description: ``default (1 replica)``, ``MultiWorkerMirroredStrategy (4 replicas, 2 workers)``."""
    replicas = strategy.num_replicas_in_sync
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    name = "MultiWorkerMirroredStrategy" if multi_worker else type(strategy).__name__
    if strategy is tf.distribute.get_strategy() and replicas == 1:
        name = "default"
    where = f", {tf_config_workers()} workers" if multi_worker else ""
    return f"{name} ({replicas} replica{'s' if replicas != 1 else ''}{where})"


def is_chief():
    """True on the worker that writes checkpoints and logs (the only worker outside a cluster)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    task = json.loads(raw).get("task", {})
    cluster = json.loads(raw).get("cluster", {})
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") in (None, "worker") and int(task.get("index", 0)) == 0
