"""Train a DLDL-v2 model (or a baseline) from TFRecords; resumable; exported for TF Serving.

    python -m tfdldl.train --config configs/utkface_thin.yaml [--set train.epochs=3 ...]

The run folder (``output_dir``, default ``runs/<name>``) receives:

    config.yaml           the resolved experiment (file + overrides)
    train.log             what the run did, including resumes and the final metrics
    training_log.csv      one row per epoch: losses, metrics, val metrics, learning rate
    tensorboard/          TensorBoard scalars
    best.weights.h5       the weights with the lowest validation MAE
    backup/               the resumable state (deleted when the run has finished)
    model.keras           the final (best-by-validation) model, for fine-tuning
    results.json          test-split metrics, flip-averaged (tfdldl.evaluate.compute_results)

and the SavedModel goes to ``<export.saved_models_dir>/<name>/<version>/`` with a
``models.config`` beside it (tfdldl.export).

Kill it at any moment and run the same command again: it resumes at the last backup
(every ``train.backup_every_steps`` steps and each epoch end) and finishes the planned
epochs; see tfdldl.resume. A kill after the export (or after results.json) resumes into
the export this run already wrote. The backup records the settings and data it was made
with; a rerun with other ones is refused (delete the run folder to start fresh). Only
one process trains into a run folder at a time (``.lock``), every file in it is written
atomically, and none is written through a symbolic link.

A run whose best validation MAE is no better than predicting the training labels' mean
for every face says so in train.log, on stderr and in results.json
(``"no_better_than_mean"``), and the command exits with status 3.

Under MultiWorkerMirroredStrategy Keras' ``model.fit`` does not work (keras#20585), so the
run uses :func:`_custom_loop` there: the same compiled model, losses, optimizer, callbacks
and data stream, stepped with ``strategy.run``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import sys
from typing import Any, Optional, Sequence

from tfdldl import callbacks as callbacks_module
from tfdldl import cli, distribute, input_pipeline, resume, safe_io
from tfdldl.config import ConfigError, save_config, to_dict
from tfdldl.experiment import Experiment, load_experiment
from tfdldl.inference import TRAINING_FACES_KEY
from tfdldl.jsonio import write_json
from tfdldl.manifest import Manifest, ManifestError, read_manifest
from tfdldl.model_setup import build_compiled_model

CSV_LOG = "training_log.csv"
BEST_WEIGHTS = "best.weights.h5"
KERAS_MODEL = "model.keras"
RESULTS = "results.json"
# The validation metric that picks the best checkpoint (Keras logs metric "mae" on "value").
MONITOR = "val_value_mae"

log = logging.getLogger("tfdldl.train")


class TrainingStopped(RuntimeError):
    """Training stopped before the planned epochs (NaN/Inf loss)."""


class RunFolderError(ValueError):
    """The run folder holds a finished run, or a backup of another run's settings."""


# Settings that do not change what is trained: a resumed run may change these.
RESUMABLE_KEYS = ("name", "output_dir", "data.tfrecords", "train.verbose",
                  "train.backup_every_steps", "export")
# Manifest keys that identify the data a run trains on.
DATA_KEYS = ("schema_version", "label_space", "image_size", "sigma", "splits", "build",
             "shards")
# Exit status of a finished run that is no better than predicting the mean.
USELESS_EXIT = 3


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


def train(experiment: Experiment, strategy=None) -> dict[str, Any]:
    """Run ``experiment`` to the end (or resume it); returns the results dict.

    Args:
      experiment: the validated config.
      strategy: a tf.distribute strategy; None picks one from ``experiment.distribution``.
        It is created here FIRST, before any tensor (MultiWorkerMirroredStrategy needs that).
    Returns:
      The results written to results.json ({} on non-chief workers).
    Raises:
      ManifestError: missing/empty data, data built on another label space, a damaged
        shard (named).
      DistributionError: batch not divisible by the replicas, bad TF_CONFIG.
      TrainingStopped: NaN/Inf loss (the message says where and what to try).
      RunFolderError: the run folder already holds a finished run, or a backup made with
        other settings or data.
      tfdldl.safe_io.FolderBusyError: another process trains into the same run folder.
    """
    if strategy is None:
        strategy = distribute.make_strategy(experiment.distribution.strategy)
    lock = (safe_io.FolderLock(experiment.run_dir, "tfdldl.train")
            if distribute.is_chief(strategy) else contextlib.nullcontext())
    with lock:
        trained = fit_model(experiment, strategy)
        if not trained.chief:
            return {}
        results = _finish(trained.model, experiment, trained.manifest, trained.plan,
                          trained.backup)
        trained.backup.remove()
    return results


@dataclasses.dataclass
class Trained:
    """What :func:`fit_model` leaves: the trained model and where it came from."""

    model: Any
    manifest: Manifest
    plan: Plan
    backup: resume.StepBackup
    chief: bool


def fit_model(experiment: Experiment, strategy=None) -> Trained:
    """Everything of :func:`train` up to the end of the last epoch (no export, no test).

    Same arguments and errors as :func:`train` (which holds the run folder's lock around
    this; a direct caller must keep other writers away from the run folder itself).
    """
    if strategy is None:
        strategy = distribute.make_strategy(experiment.distribution.strategy)
    import keras
    import tensorflow as tf

    distribute.check_global_batch(experiment.train.batch_size, strategy)
    chief = distribute.is_chief(strategy)
    run_dir = experiment.run_dir
    manifest = read_manifest(experiment.data.tfrecords)
    _check_splits(manifest, experiment)
    backup = resume.StepBackup(os.path.join(run_dir, "backup"),
                               experiment.train.backup_every_steps, writer=chief)
    _prepare_run_dir(run_dir, experiment, chief, backup, _identity(experiment, manifest))

    keras.utils.set_random_seed(experiment.seed)
    if experiment.deterministic:
        tf.config.experimental.enable_op_determinism()
    steps = experiment.train.steps_per_epoch or input_pipeline.steps_per_epoch(
        manifest, experiment.data.train_split, experiment.train.batch_size)
    with strategy.scope():
        model = build_compiled_model(experiment, manifest, steps)
    plan = Plan(steps, experiment.train.epochs, backup.restore(model))
    if plan.done_steps:
        log.info("resuming from the backup at step %d of %d (epoch %d, step %d)",
                 plan.done_steps, plan.total_steps, *plan.position)
    log.info("%s on %s: %d replica(s), global batch %d, %d steps x %d epochs, data %s (%s)",
             model.name, type(strategy).__name__, strategy.num_replicas_in_sync,
             experiment.train.batch_size, steps, plan.epochs, manifest.root,
             manifest.label_space.describe())

    sync = experiment.distribution.sync_batch_norm and strategy.num_replicas_in_sync > 1
    with distribute.synchronized_batch_norm(model, sync), _naming_damaged_shards(manifest):
        if distribute.needs_custom_loop(strategy):
            _custom_loop(model, experiment, manifest, plan, backup, strategy, chief)
        else:
            _fit(model, experiment, manifest, plan, backup)
    return Trained(model, manifest, plan, backup, chief)


@contextlib.contextmanager
def _naming_damaged_shards(manifest: Manifest):
    """Turn TensorFlow's ``DataLossError`` (which names no file) into a ManifestError that
    names the damaged shard, found by checking every shard of the manifest."""
    import tensorflow as tf

    from tfdldl import tfrecord_reader

    try:
        yield
    except tf.errors.DataLossError as error:
        for split in manifest.splits:
            for path in manifest.splits[split]:
                try:
                    for _ in tfrecord_reader.iter_records(path, verify_data=True):
                        pass
                except tfrecord_reader.TFRecordError as damaged:
                    raise ManifestError(f"{damaged} (data_prep.build rebuilds a damaged "
                                        "shard when rerun with its data config)") from None
        raise ManifestError(f"a shard of {manifest.root} could not be read "
                            f"({error.message.splitlines()[0]}); rerun data_prep.build") from None


def _identity(experiment: Experiment, manifest: Manifest) -> dict[str, Any]:
    """What a backup must have been trained with to be resumed: the experiment without
    RESUMABLE_KEYS, and the fingerprint of the data (manifest keys DATA_KEYS)."""
    config = to_dict(experiment)
    for dotted in RESUMABLE_KEYS:
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node.get(part, {})
        node.pop(last, None)
    data = {key: manifest.raw.get(key) for key in DATA_KEYS}
    return {"config": config, "data": resume.fingerprint(data)}


def _check_splits(manifest: Manifest, experiment: Experiment) -> None:
    """Fail early (ManifestError) on a missing or empty split."""
    for split in (experiment.data.train_split, experiment.data.val_split,
                  experiment.data.test_split):
        if split:
            manifest.shards(split)


def _prepare_run_dir(run_dir: str, experiment: Experiment, chief: bool,
                     backup: resume.StepBackup, identity: dict[str, Any]) -> None:
    """Refuse a finished run folder or another run's backup, clean up temporaries left by
    a kill, write config.yaml, start train.log (in that order: config.yaml only ever
    describes the run the folder holds)."""
    fresh = (f"delete {run_dir} (rm -r) or set another output_dir (--set output_dir=...)")
    for name in ("backup", "tensorboard", CSV_LOG, "train.log"):  # written into or appended to
        if os.path.islink(os.path.join(run_dir, name)):
            raise safe_io.refuse_link(os.path.join(run_dir, name))
    if os.path.exists(os.path.join(run_dir, RESULTS)) and not os.path.exists(
            os.path.join(run_dir, "backup")):
        raise RunFolderError(f"{run_dir} holds a finished run ({RESULTS} exists); {fresh}")
    try:
        backup.check_or_start(identity, fresh)
    except resume.BackupMismatch as error:
        raise RunFolderError(str(error)) from None
    if not chief:
        return
    for name in _leftovers(run_dir):
        safe_io.remove_temporaries(os.path.join(run_dir, name))
    save_config(experiment, os.path.join(run_dir, "config.yaml"))
    handler = logging.StreamHandler(safe_io.open_append(os.path.join(run_dir, "train.log")))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for old in log.handlers:
        if getattr(old, "stream", None) not in (sys.stdout, sys.stderr):
            old.close()
    log.handlers = [handler, logging.StreamHandler(sys.stdout)]
    log.setLevel(logging.INFO)
    log.propagate = False
    _check_best_weights(os.path.join(run_dir, BEST_WEIGHTS))


def _leftovers(run_dir: str) -> set[str]:
    """The files of ``run_dir`` whose temporaries (safe_io names) a kill left behind."""
    pattern = re.compile(r"^\.(.+)\.partial-")
    names = set()
    for name in os.listdir(run_dir):
        match = pattern.match(name)
        if match:
            names.add(match.group(1))
        elif name.startswith(".partial-") and name.endswith(".keras"):  # older versions
            os.remove(os.path.join(run_dir, name))
    return names


def _check_best_weights(path: str) -> None:
    """Delete a best-weights file a kill left torn (older versions wrote it in place)."""
    if os.path.exists(path) and not callbacks_module.usable_weights_file(path):
        log.warning("%s is damaged (a kill during its write); deleted, the best epoch is "
                    "chosen again from the epochs still to run", path)
        os.remove(path)


def _datasets(experiment: Experiment, manifest: Manifest, plan: Plan, model,
              first_epoch: int, epochs: int, skip: int, batch_size: int,
              shard: Optional[tuple[int, int]] = None):
    """(train stream over epochs [first_epoch, epochs) from step ``skip``, val dataset)."""
    from tfdldl.models import label_space_of

    common = dict(outputs=list(model.output_names), image_size=experiment.model.input_size,
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
    """NaN stop, CSV log, best checkpoint, TensorBoard, backup (in that order)."""
    import keras

    run_dir = experiment.run_dir
    stop = callbacks_module.StopOnNaN()
    if not chief:
        return [stop, backup]
    kept = resume.truncate_csv_log(os.path.join(run_dir, CSV_LOG), first_epoch)
    best_path = os.path.join(run_dir, BEST_WEIGHTS)
    # Without the file (never written, or deleted as damaged) any epoch may become best.
    best = min((float(row[MONITOR]) for row in kept if row.get(MONITOR)),
               default=None) if os.path.exists(best_path) else None
    callbacks = [stop, callbacks_module.LearningRateLog(), keras.callbacks.CSVLogger(
        os.path.join(run_dir, CSV_LOG), append=True)]
    if experiment.data.val_split:
        callbacks.append(callbacks_module.BestCheckpoint(best_path, MONITOR, best))
    if tensorboard and _tensorboard_installed():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"),
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
            epoch, batch, loss = callback.stopped_at
            if backup.exists():
                kept = (f"The last backup with finite weights (step {backup.saved_step}) is in "
                        f"{backup.backup_dir}: the same command resumes from it.")
            else:
                kept = ("No backup with finite weights was written before the stop, so a "
                        "rerun starts from scratch.")
            raise TrainingStopped(
                f"training stopped: the loss became {loss} at epoch {epoch}, step {batch}. "
                f"{kept} To retry with other settings, start fresh (delete the run folder "
                "or set another output_dir): lower optimizer.learning_rate, check the data "
                "for bad labels/distributions, or try loss.kl_normalization=mean")


def _fit(model, experiment: Experiment, manifest: Manifest, plan: Plan,
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
        train, val = _datasets(experiment, manifest, plan, model, first, last, skip,
                               experiment.train.batch_size)
        callbacks = _callbacks(experiment, backup, first, chief=True)
        model.fit(train, epochs=last, initial_epoch=first, shuffle=False,
                  steps_per_epoch=plan.steps_per_epoch - skip, validation_data=val,
                  callbacks=callbacks, verbose=verbose)
        _raise_if_stopped(callbacks, backup)


def _custom_loop(model, experiment: Experiment, manifest: Manifest, plan: Plan,
                 backup: resume.StepBackup, strategy, chief: bool) -> None:
    """Training under MultiWorkerMirroredStrategy, where ``model.fit`` fails.

    Uses the compiled model's own loss (``model.compute_loss``: the losses and weights
    from tfdldl.losses, scaled for the replica count exactly as in ``model.fit``), its
    optimizer and metrics, and the same callbacks and data stream as :func:`_fit`.
    """
    import keras
    import tensorflow as tf

    global_batch = experiment.train.batch_size
    resolver = strategy.cluster_resolver
    workers = max(1, len(resolver.cluster_spec().as_dict().get("worker", []))
                  + len(resolver.cluster_spec().as_dict().get("chief", [])))
    epoch, step = plan.position
    train_data, val_data = _datasets(
        experiment, manifest, plan, model, epoch, plan.epochs, step, global_batch // workers,
        shard=(workers, _worker_index(resolver)))
    train_data = train_data.with_options(_no_autoshard())
    iterator = iter(strategy.experimental_distribute_dataset(train_data))

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


def _finish(model, experiment: Experiment, manifest: Manifest, plan: Plan,
            backup: resume.StepBackup) -> dict[str, Any]:
    """Best weights -> model.keras, SavedModel, flip-averaged test metrics -> results.json.

    Safe to run again after a kill at any point: an export this run already wrote (its
    path was recorded in the backup before it existed) is kept, not written twice.
    """
    from tfdldl import evaluate, export

    run_dir = experiment.run_dir
    best_path = os.path.join(run_dir, BEST_WEIGHTS)
    chosen = "final"
    if os.path.exists(best_path):
        model.load_weights(best_path)
        chosen = "best validation MAE"
    config = {**to_dict(experiment), TRAINING_FACES_KEY: manifest.face_alignment()}
    keras_path = export.save_keras(model, os.path.join(run_dir, KERAS_MODEL),
                                   config[TRAINING_FACES_KEY])
    evaluated = keras_path
    saved_model = None
    if experiment.export.enabled:
        target = os.path.abspath(os.path.join(experiment.export.saved_models_dir,
                                              experiment.export_name,
                                              str(experiment.export.version)))
        if backup.exported() == target and os.path.isdir(target):
            log.info("keeping %s: this run exported it before it was interrupted", target)
            export.remove_scratch(experiment.export.saved_models_dir, experiment.export_name)
            saved_model = target
        else:
            if not os.path.exists(target):
                backup.note_export(target)
            saved_model = export.export_saved_model(
                model, experiment.export.saved_models_dir, experiment.export_name,
                experiment.export.version, config)
        export.write_models_config(experiment.export.saved_models_dir)
        evaluated = saved_model
    results: dict[str, Any] = {"experiment": experiment.name, "weights": chosen,
                               "epochs": plan.epochs, "steps": plan.total_steps,
                               "keras_model": os.path.abspath(keras_path),
                               "saved_model": saved_model and os.path.abspath(saved_model)}
    results.update(_best_epoch(run_dir))
    if experiment.data.test_split:
        test = evaluate.evaluate(evaluated, manifest.root, experiment.data.test_split,
                                 out_dir=None, flip=True,
                                 batch_size=experiment.train.batch_size, report=False)
        results["test"] = test
        log.info("test (flip-averaged) %s", evaluate.summary(test).replace("\n", "; "))
    verdict = _compare_with_mean(manifest, experiment, results)
    if verdict:
        results["no_better_than_mean"] = verdict
        log.warning("=" * 78)
        log.warning("WARNING: %s", verdict["message"])
        log.warning("=" * 78)
    path = write_json(os.path.join(run_dir, RESULTS), results)
    log.info("wrote %s%s", path, f" and {saved_model}" if saved_model else "")
    return results


def _compare_with_mean(manifest: Manifest, experiment: Experiment,
                       results: dict[str, Any]) -> Optional[dict[str, Any]]:
    """None when the model beats predicting the training labels' mean for every face, else
    {"split", "mae", "mean_predictor_mae", "message"}.

    Judged on the best validation MAE (or the test MAE without a validation split); a
    model with no finite MAE counts as no better.
    """
    split, mae = experiment.data.val_split, results.get("best_val_mae")
    if not split:
        split, mae = experiment.data.test_split, results.get("test", {}).get("mae")
    if not split or not experiment.data.train_split:
        return None
    center = float(_labels(manifest, experiment.data.train_split).mean())
    baseline = float(abs(_labels(manifest, split) - center).mean())
    if mae is not None and math.isfinite(mae) and mae < baseline:
        return None
    return {"split": split, "mae": mae, "mean_predictor_mae": baseline,
            "message": (f"the model is no better than predicting the training mean "
                        f"{center:.4g} for every face: {split} MAE {mae} vs {baseline:.4g}. "
                        "It learned nothing usable; lower optimizer.learning_rate, train "
                        "longer, or check the data and labels")}


def _labels(manifest: Manifest, split: str):
    """float32 [N]: the labels of ``split``, read from its shards."""
    import numpy as np
    import tensorflow as tf

    from tfdldl import example_schema

    feature = {example_schema.LABEL: tf.io.FixedLenFeature([], tf.float32)}
    dataset = tf.data.TFRecordDataset(manifest.shards(split)).batch(4096).map(
        lambda records: tf.io.parse_example(records, feature)[example_schema.LABEL])
    return np.concatenate([batch.numpy() for batch in dataset])


def _best_epoch(run_dir: str) -> dict[str, Any]:
    """{"best_epoch", "best_val_mae"} read from the CSV log (empty without validation)."""
    import csv

    path = os.path.join(run_dir, CSV_LOG)
    if not os.path.exists(path):
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get(MONITOR)]
    if not rows:
        return {}
    best = min(rows, key=lambda row: float(row[MONITOR]))
    value = float(best[MONITOR])
    return {"best_epoch": int(best["epoch"]),
            "best_val_mae": value if math.isfinite(value) else None}


def main(argv: Sequence[str]) -> int:
    """absl entry point: exit 2 with a one-line message on bad input, 1 on a NaN stop, 3
    when the finished model is no better than predicting the mean."""
    from absl import flags

    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    values = flags.FLAGS
    try:
        experiment = load_experiment(values.config, values.set or [])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        strategy = distribute.make_strategy(experiment.distribution.strategy)
        results = train(experiment, strategy)
    except (ConfigError, ManifestError, distribute.DistributionError, RunFolderError,
            safe_io.FolderBusyError, safe_io.UnsafePathError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingStopped as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if results.get("no_better_than_mean"):
        print(f"warning: {results['no_better_than_mean']['message']}", file=sys.stderr)
        return USELESS_EXIT
    return 0


def define_flags() -> None:
    """The command-line flags of ``python -m tfdldl.train``."""
    cli.define_config_flags("configs/utkface_thin.yaml")


def run() -> None:
    """Console-script entry point (``tfdldl-train``)."""
    cli.run_main(main, define_flags)


if __name__ == "__main__":
    run()
