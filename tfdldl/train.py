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
run uses :func:`tfdldl.train_loop.custom_loop` there: the same compiled model, losses,
optimizer, callbacks and data stream, stepped with ``strategy.run``. The run folder's files
and errors are :mod:`tfdldl.run_folder`'s, shared with ``tfdldl.backend_train``; this module
imports TensorFlow and Keras only once a run starts, so ``--help`` answers at once.
"""


from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Sequence

from tfdldl import cli, run_folder, safe_io
from tfdldl.config import ConfigError, save_config, to_dict
from tfdldl.run_folder import BEST_WEIGHTS, RunFolderError, TrainingStopped

if TYPE_CHECKING:
    from tfdldl import resume
    from tfdldl.experiment import Experiment
    from tfdldl.manifest import Manifest
    from tfdldl.train_loop import Plan

__all__ = ["train", "fit_model", "Trained", "RunFolderError", "TrainingStopped", "main", "run"]

log = logging.getLogger("tfdldl.train")

# Settings that do not change what is trained: a resumed run may change these.
RESUMABLE_KEYS = ("name", "output_dir", "data.tfrecords", "train.verbose",
                  "train.backup_every_steps", "train.onednn", "export")
# Manifest keys that identify the data a run trains on.
DATA_KEYS = ("schema_version", "label_space", "image_size", "sigma", "splits", "build",
             "shards")
# Exit status of a finished run that is no better than predicting the mean.
USELESS_EXIT = 3


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
    from tfdldl import distribute, train_finish

    if strategy is None:
        strategy = distribute.make_strategy(experiment.distribution.strategy)
    lock = (safe_io.FolderLock(experiment.run_dir, "tfdldl.train")
            if distribute.is_chief(strategy) else contextlib.nullcontext())
    with lock:
        trained = fit_model(experiment, strategy)
        if not trained.chief:
            return {}
        results = train_finish.finish(trained.model, experiment, trained.manifest,
                                      trained.plan, trained.backup)
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
    from tfdldl import distribute

    if strategy is None:
        strategy = distribute.make_strategy(experiment.distribution.strategy)
    import keras
    import tensorflow as tf

    from tfdldl import input_pipeline, resume, train_loop
    from tfdldl.manifest import read_manifest
    from tfdldl.model_setup import build_compiled_model

    distribute.check_global_batch(experiment.train.batch_size, strategy)
    chief = distribute.is_chief(strategy)
    run_dir = experiment.run_dir
    manifest = read_manifest(experiment.data.tfrecords)
    _check_splits(manifest, experiment)
    backup = resume.StepBackup(os.path.join(run_dir, run_folder.BACKUP),
                               experiment.train.backup_every_steps, writer=chief)
    _prepare_run_dir(run_dir, experiment, chief, backup, _identity(experiment, manifest))

    keras.utils.set_random_seed(experiment.seed)
    if experiment.deterministic:
        tf.config.experimental.enable_op_determinism()
    steps = experiment.train.steps_per_epoch or input_pipeline.steps_per_epoch(
        manifest, experiment.data.train_split, experiment.train.batch_size)
    with strategy.scope():
        model = build_compiled_model(experiment, manifest, steps)
    plan = train_loop.Plan(steps, experiment.train.epochs, backup.restore(model))
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
            train_loop.custom_loop(model, experiment, manifest, plan, backup, strategy, chief)
        else:
            train_loop.fit(model, experiment, manifest, plan, backup)
    return Trained(model, manifest, plan, backup, chief)


@contextlib.contextmanager
def _naming_damaged_shards(manifest: Manifest):
    """Turn TensorFlow's ``DataLossError`` (which names no file) into a ManifestError that
    names the damaged shard, found by checking every shard of the manifest."""
    import tensorflow as tf

    from tfdldl import tfrecord_reader
    from tfdldl.manifest import ManifestError

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
    from tfdldl import resume

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
    from tfdldl import resume

    fresh = (f"delete {run_dir} (rm -r) or set another output_dir (--set output_dir=...)")
    run_folder.refuse_links(run_dir, (run_folder.BACKUP, run_folder.TENSORBOARD,
                                      run_folder.CSV_LOG, run_folder.TRAIN_LOG))
    run_folder.refuse_finished(run_dir, fresh, resumable=True)
    try:
        backup.check_or_start(identity, fresh)
    except resume.BackupMismatch as error:
        raise RunFolderError(str(error)) from None
    if not chief:
        return
    run_folder.remove_leftovers(run_dir)
    save_config(experiment, os.path.join(run_dir, run_folder.CONFIG))
    run_folder.start_log(log, run_dir)
    _check_best_weights(os.path.join(run_dir, BEST_WEIGHTS))


def _check_best_weights(path: str) -> None:
    """Delete a best-weights file a kill left torn (older versions wrote it in place)."""
    from tfdldl import callbacks

    if os.path.exists(path) and not callbacks.usable_weights_file(path):
        log.warning("%s is damaged (a kill during its write); deleted, the best epoch is "
                    "chosen again from the epochs still to run", path)
        os.remove(path)


def main(argv: Sequence[str]) -> int:
    """absl entry point: exit 2 with a one-line message on bad input, 1 on a NaN stop, 3
    when the finished model is no better than predicting the mean."""
    from absl import flags

    from tfdldl.experiment import load_experiment
    from tfdldl.manifest import ManifestError

    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    values = flags.FLAGS
    try:
        experiment = load_experiment(values.config, values.set or [])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from tfdldl import distribute
    from tfdldl.model_setup import use_onednn

    use_onednn(experiment.train.onednn, restart_argv=sys.orig_argv)

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
    """Console-script entry point (``tfdldl-train``): TensorFlow (which reading a config
    brings in through Keras) is imported quietly once the flags are parsed (tfdldl.cli), with
    oneDNN's kernels on (``train.onednn``'s default); when the config asks for the other
    setting the process restarts once with it (tfdldl.model_setup.use_onednn)."""
    from tfdldl.model_setup import ONEDNN_ENV

    os.environ.setdefault(ONEDNN_ENV, "1")
    cli.run_main(main, define_flags, needs_tensorflow=True)


if __name__ == "__main__":
    run()
