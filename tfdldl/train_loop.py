"""The epochs of ``tfdldl.train``: its data streams, callbacks, and the two training loops.

:func:`fit` runs Keras' ``model.fit``; :func:`custom_loop` runs under
MultiWorkerMirroredStrategy, where ``model.fit`` fails (keras#20585): the same compiled
model, losses, optimizer, callbacks and data stream, stepped with ``strategy.run``. Both
resume at the restored position of a :class:`Plan`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Optional, Sequence

from tfdldl import callbacks as callbacks_module
from tfdldl import input_pipeline, resume
from tfdldl.run_folder import BEST_WEIGHTS, CSV_LOG, MONITOR, TENSORBOARD, nan_stop

if TYPE_CHECKING:
    from tfdldl.experiment import Experiment
    from tfdldl.manifest import Manifest

log = logging.getLogger("tfdldl.train")


@dataclasses.dataclass
class Plan:
    """Where the run stands: steps per epoch, epochs, and the restored position."""

    steps_per_epoch: int
    epochs: int
    done_steps: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def position(self) -> tuple[int, int]:
        """(epoch, step within it) of the next step to run."""
        return divmod(self.done_steps, self.steps_per_epoch)


def datasets(experiment: Experiment, manifest: Manifest, plan: Plan, model,
             first_epoch: int, epochs: int, skip: int, batch_size: int,
             shard: Optional[tuple[int, int]] = None):
    """(train stream over epochs [first_epoch, epochs) from step ``skip``, val dataset)."""
    from tfdldl.heads import of_model
    from tfdldl.models import label_space_of

    common = dict(outputs=of_model(model), image_size=experiment.model.input_size,
                  seed=experiment.seed, deterministic=experiment.deterministic,
                  label_space=label_space_of(model))
    train = input_pipeline.make_dataset(
        manifest, experiment.data.train_split, batch_size, training=True,
        augment_cfg=experiment.augment, steps_per_epoch=plan.steps_per_epoch,
        shuffle_buffer=experiment.data.shuffle_buffer,
        first_epoch=first_epoch, epochs=epochs, skip_batches=skip, shard=shard,
        in_memory=experiment.data.in_memory, **common)
    val = None
    if experiment.data.val_split:
        val = input_pipeline.make_dataset(manifest, experiment.data.val_split,
                                          experiment.train.batch_size, training=False,
                                          **common)
    return train, val


def _callbacks(experiment: Experiment, backup: resume.StepBackup, first_epoch: int,
               chief: bool, tensorboard: bool = True) -> list:
    """NaN stop, learning rate and learned loss weights, CSV log, best checkpoint,
    TensorBoard, backup (in that order)."""
    import keras

    from tfdldl.loss_weighting import LossWeightLog

    run_dir = experiment.run_dir
    stop = callbacks_module.StopOnNaN()
    if not chief:
        return [stop, backup]
    kept = resume.truncate_csv_log(os.path.join(run_dir, CSV_LOG), first_epoch)
    best_path = os.path.join(run_dir, BEST_WEIGHTS)
    # Without the file (never written, or deleted as damaged) any epoch may become best.
    best = min((float(row[MONITOR]) for row in kept if row.get(MONITOR)),
               default=None) if os.path.exists(best_path) else None
    callbacks = [stop, callbacks_module.LearningRateLog(), LossWeightLog(),
                 keras.callbacks.CSVLogger(os.path.join(run_dir, CSV_LOG), append=True)]
    if experiment.data.val_split:
        callbacks.append(callbacks_module.BestCheckpoint(best_path, MONITOR, best))
    if tensorboard and _tensorboard_installed():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, TENSORBOARD),
                                                     write_graph=False))
    return callbacks + [backup]


def _tensorboard_installed() -> bool:
    """Whether the tensorboard package is importable (else the run says so and skips it)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        log.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return False
    return True


def _raise_if_stopped(callbacks: Sequence, backup: resume.StepBackup) -> None:
    for callback in callbacks:
        stopped = isinstance(callback, callbacks_module.StopOnNaN) and callback.stopped_at
        if stopped:
            if backup.exists():
                kept = (f"The last backup with finite weights (step {backup.saved_step}) is in "
                        f"{backup.backup_dir}: the same command resumes from it.")
            else:
                kept = ("No backup with finite weights was written before the stop, so a "
                        "rerun starts from scratch.")
            raise nan_stop(stopped, f"{kept} To retry with other settings, start fresh "
                           "(delete the run folder or set another output_dir): lower "
                           "optimizer.learning_rate, check the data for bad "
                           "labels/distributions, or try loss.kl_normalization=mean")


def fit(model, experiment: Experiment, manifest: Manifest, plan: Plan,
         backup: resume.StepBackup) -> None:
    """Keras ``model.fit``: the rest of the interrupted epoch first, then the others."""
    epoch, step = plan.position
    verbose = experiment.train.verbose
    phases = []
    if step and epoch < plan.epochs:
        phases.append((epoch, epoch + 1, step))
        epoch += 1
    if epoch < plan.epochs:
        phases.append((epoch, plan.epochs, 0))
    for first, last, skip in phases:
        train, val = datasets(experiment, manifest, plan, model, first, last, skip,
                              experiment.train.batch_size)
        callbacks = _callbacks(experiment, backup, first, chief=True)
        model.fit(train, epochs=last, initial_epoch=first, shuffle=False,
                  steps_per_epoch=plan.steps_per_epoch - skip, validation_data=val,
                  callbacks=callbacks, verbose=verbose)
        _raise_if_stopped(callbacks, backup)


def custom_loop(model, experiment: Experiment, manifest: Manifest, plan: Plan,
                backup: resume.StepBackup, strategy, chief: bool) -> None:
    """Training under MultiWorkerMirroredStrategy, where ``model.fit`` fails.

    Uses the compiled model's own loss (``model.compute_loss``: the losses and weights
    from tfdldl.losses, scaled for the replica count exactly as in ``model.fit``), its
    optimizer and metrics, and the same callbacks and data stream as :func:`fit`.
    """
    import keras

    global_batch = experiment.train.batch_size
    resolver = strategy.cluster_resolver
    workers = max(1, len(resolver.cluster_spec().as_dict().get("worker", []))
                  + len(resolver.cluster_spec().as_dict().get("chief", [])))
    epoch, step = plan.position
    train_data, val_data = datasets(
        experiment, manifest, plan, model, epoch, plan.epochs, step, global_batch // workers,
        shard=(workers, _worker_index(resolver)))
    train_data = train_data.with_options(_no_autoshard())
    iterator = iter(strategy.experimental_distribute_dataset(train_data))
    train_step = _distributed_step(model, strategy)
    callbacks = keras.callbacks.CallbackList(
        _callbacks(experiment, backup, epoch, chief, tensorboard=False),
        model=model, add_progbar=chief and experiment.train.verbose > 0,
        verbose=experiment.train.verbose, epochs=plan.epochs,
        steps=plan.steps_per_epoch)
    model.stop_training = False
    callbacks.on_train_begin()
    for epoch in range(epoch, plan.epochs):
        callbacks.on_epoch_begin(epoch)
        total, count = 0.0, 0
        for batch in range(step, plan.steps_per_epoch):
            callbacks.on_train_batch_begin(batch)
            total += float(train_step(iterator))
            count += 1
            callbacks.on_train_batch_end(batch, {"loss": total / count})
            if model.stop_training:
                break
        step = 0
        logs = {"loss": total / max(count, 1)}
        if val_data is not None and not model.stop_training:
            logs.update(_validate(model, val_data))
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end()
    _raise_if_stopped(callbacks.callbacks, backup)


def _distributed_step(model, strategy):
    """A tf.function: distributed iterator -> the global batch's loss, after one update."""
    import tensorflow as tf

    def replica_step(images, targets):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            # Keras' compiled loss: the local batch mean already divided by the replica
            # count, as in model.fit, so the all-reduced gradient is the global mean's.
            loss = model.compute_loss(x=images, y=targets, y_pred=outputs, training=True)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function
    def train_step(iterator):
        images, targets = next(iterator)
        losses = strategy.run(replica_step, args=(images, targets))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


def _validate(model, dataset) -> dict[str, float]:
    """Validation loss and compiled metrics on ``dataset``, computed on this worker alone.

    Every worker holds the same weights, so every worker gets the same numbers (and takes
    the same checkpoint and stop decisions) without any collective op.
    """
    model.reset_metrics()
    loss_sum, count = 0.0, 0
    for images, targets in dataset:
        outputs = model(images, training=False)
        size = int(images.shape[0])
        loss = model.compute_loss(x=images, y=targets, y_pred=outputs, training=False)
        loss_sum += float(loss) * size
        count += size
        model.compute_metrics(images, targets, outputs, sample_weight=None)
    logs = {f"val_{key}": float(value) for key, value in model.get_metrics_result().items()
            if key != "loss"}
    logs["val_loss"] = loss_sum / max(count, 1)
    return logs


def _worker_index(resolver) -> int:
    """This worker's index among all workers (chief first)."""
    spec = resolver.cluster_spec().as_dict()
    offset = len(spec.get("chief", []))
    return resolver.task_id if resolver.task_type == "chief" else offset + resolver.task_id


def _no_autoshard():
    """Dataset options turning tf.distribute's auto-sharding off (make_dataset shards)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options
