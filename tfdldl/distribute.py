"""Choosing the tf.distribute strategy, and the rules that come with it.

- One machine, several GPUs: MirroredStrategy over all of them.
- One GPU or none: the default strategy (one device) unless MirroredStrategy is asked
  for, which then mirrors over all logical CPU devices (how the tests get 2 replicas).
- ``TF_CONFIG`` naming several workers: MultiWorkerMirroredStrategy.

Create the strategy FIRST, before any other TensorFlow or Keras tensor exists:
MultiWorkerMirroredStrategy configures collective ops at start-up and fails ("Collective
ops must be configured at program startup") once the runtime is initialised.
Keras 3 ``model.fit`` does not work under MultiWorkerMirroredStrategy
(keras-team/keras#20585); :func:`needs_custom_loop` says when tfdldl.train must use its
own loop instead.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

import keras
import tensorflow as tf


class DistributionError(ValueError):
    """A strategy request the machine or the config cannot satisfy."""


def cluster_workers(tf_config: str | None = None) -> int:
    """Number of worker tasks (workers + chief) named by ``TF_CONFIG`` (0 without it).

    Raises:
      DistributionError: TF_CONFIG is not valid JSON with a "cluster" mapping.
    """
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw.strip():
        return 0
    try:
        cluster = json.loads(raw)["cluster"]
        return sum(len(cluster.get(role, [])) for role in ("chief", "worker"))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise DistributionError(f"TF_CONFIG is not a valid cluster description ({error!r}); "
                                'expected {"cluster": {"worker": [...]}, "task": {...}}') from None


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """The strategy for ``kind`` ("auto", "mirrored", "multi_worker", "default").

    Call before creating any tensor (see the module docstring).

    Raises:
      DistributionError: "multi_worker" without a TF_CONFIG naming workers.
    """
    workers = cluster_workers()
    if kind == "multi_worker" or (kind == "auto" and workers > 1):
        if workers == 0:
            raise DistributionError(
                "distribution.strategy is multi_worker but TF_CONFIG is not set; set TF_CONFIG "
                "on every worker (cluster and task) or use strategy auto/mirrored")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if kind == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in gpus])
    return tf.distribute.get_strategy()


def needs_custom_loop(strategy: tf.distribute.Strategy) -> bool:
    """True when Keras ``model.fit`` cannot run under ``strategy`` (multi-worker)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (always true on one machine)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not needs_custom_loop(strategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (
        task_type == "worker" and task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def check_global_batch(batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The per-replica batch for the GLOBAL ``batch_size``.

    Raises:
      DistributionError: batch_size is not a multiple of the replica count.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        lower = batch_size - batch_size % replicas
        raise DistributionError(
            f"train.batch_size {batch_size} is not divisible by the {replicas} replicas of "
            f"{type(strategy).__name__}; use a multiple of {replicas} "
            f"(e.g. --set train.batch_size={max(lower, replicas)})")
    return batch_size // replicas


@contextlib.contextmanager
def synchronized_batch_norm(model: keras.Model, enabled: bool) -> Iterator[None]:
    """Within the block, BatchNorm layers use statistics of the global batch.

    Keras' ``synchronized=True`` exists only on the TensorFlow backend, so it is set for
    training and reset afterwards: saved models keep the portable ``False``.
    """
    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, keras.layers.BatchNormalization)] if enabled else []
    for layer in layers:
        layer.synchronized = True
    try:
        yield
    finally:
        for layer in layers:
            layer.synchronized = False
