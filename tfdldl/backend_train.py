"""Train an experiment with Keras on JAX or PyTorch (no TensorFlow), then export it with TensorFlow.

    KERAS_BACKEND=jax python -m tfdldl.backend_train --config configs/<exp>.yaml [--set k=v ...]
    python -m tfdldl.backend_train --export_from runs/<exp>      # TensorFlow backend

Training reads the same experiment YAML as ``tfdldl.train`` and builds the same compiled
model, loss, metrics and learning-rate schedule (:mod:`tfdldl.model_setup`); the data
come from the TF-free reader (:mod:`tfdldl.tfrecord_reader`) and the augmentation from
the host pipeline (:mod:`tfdldl.host_pipeline`, all CPU cores), so it runs on a GPU
machine that has Keras and JAX (or PyTorch) but no TensorFlow. Under JAX the train step is
always XLA-compiled (``train.jit_compile`` is a TensorFlow setting). There is no
mid-run resume here (use ``tfdldl.train`` for that); ``--time_limit_s`` ends training
cleanly at an epoch end instead of being killed.

The run folder (``output_dir``, default ``runs/<name>``) receives:

    config.yaml          the resolved experiment
    label_space.json     the data's label grid (the export side needs no data)
    train.log            what the run did
    training_log.csv     one row per epoch: losses, metrics, val metrics, learning rate,
                         images_per_second and data_wait_share of that epoch (and
                         loss_weight_<head> under learned loss weighting)
    best.weights.h5      lowest validation MAE so far (with a validation split)
    last.weights.h5      the weights after the last finished epoch
    model.weights.h5     the chosen weights (best by validation, else last): the file to
                         bring back and export
    timing.json          throughput (images/s) and the share of training time the loop
                         waited for data, per epoch and steady-state, backend, device
    results.json         MAE on the validation and test splits present in the data,
                         plain and flip-averaged (computed on this backend)

``--export_from RUN_DIR`` (TensorFlow backend) rebuilds the network from RUN_DIR's
config.yaml and label_space.json, loads model.weights.h5, writes RUN_DIR/model.keras and
the SavedModel ``<export.saved_models_dir>/<name>/<version>/`` (tfdldl.export).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np

from tfdldl import cli, example_schema, host_pipeline, run_folder, tfrecord_reader
from tfdldl.config import ConfigError, save_config, to_dict
from tfdldl.experiment import Experiment, load_experiment
from tfdldl.inference import TRAINING_FACES_KEY
from tfdldl.label_space import LabelSpace
from tfdldl.jsonio import write_json
from tfdldl.manifest import Manifest, ManifestError, read_manifest
from tfdldl.run_folder import (BEST_WEIGHTS, CONFIG, CSV_LOG, KERAS_MODEL, MONITOR, RESULTS,
                               RunFolderError, TrainingStopped)

# This runner's own files (the others: tfdldl.run_folder, shared with tfdldl.train).
LABEL_SPACE = "label_space.json"
LAST_WEIGHTS = "last.weights.h5"
WEIGHTS = "model.weights.h5"
TIMING = "timing.json"

log = logging.getLogger("tfdldl.backend_train")


def default_workers() -> int:
    """Host-pipeline processes: every core but one (the training loop's)."""
    return max(1, (os.cpu_count() or 2) - 1)


def train(experiment: Experiment, workers: Optional[int] = None,
          time_limit_s: Optional[float] = None) -> dict[str, Any]:
    """Train ``experiment`` on the active Keras backend; returns the results dict.

    Args:
      experiment: the validated config.
      workers: host-pipeline processes; None = :func:`default_workers`.
      time_limit_s: stop at the end of the first epoch after which another epoch would
        not fit into this many seconds of training (None: no limit).
    Returns:
      {"experiment", "backend", "epochs_done", "weights", "val": {...}, "test": {...},
      "timing": {...}}; also written to results.json and timing.json.
    Raises:
      ManifestError: missing/empty split, data on another label space.
      TFRecordError, HostPipelineError: corrupt data.
      RunFolderError: the run folder holds a finished run.
    """
    import keras

    from tfdldl import heads
    from tfdldl.throughput import ThroughputLog

    run_dir = experiment.run_dir
    manifest = read_manifest(experiment.data.tfrecords)
    _prepare_run_dir(run_dir, experiment, manifest)
    backend = keras.backend.backend()
    size, batch = experiment.model.input_size, experiment.train.batch_size
    started = time.perf_counter()
    train_faces, steps, evaluation = _read_data(experiment, manifest)

    model = _seeded_model(experiment, manifest, steps, backend)
    loader = host_pipeline.HostBatches(
        train_faces, batch, heads.of_model(model), manifest.label_space, size,
        experiment.augment, seed=experiment.seed, steps_per_epoch=steps,
        workers=workers or default_workers())
    log.info("%s on Keras/%s (%s): batch %d, %d steps x %d epochs, %d host workers, data %s "
             "(%s)", model.name, backend, device_name(backend), batch, steps,
             experiment.train.epochs, loader.workers, manifest.root,
             manifest.label_space.describe())
    validation = _validation(model, manifest, evaluation.get(experiment.data.val_split))
    throughput = ThroughputLog(loader, batch * steps, time_limit_s)
    try:
        _fit(model, experiment, loader.stream(0, experiment.train.epochs), steps, validation,
             throughput)
    finally:
        loader.close()

    chosen = BEST_WEIGHTS if os.path.exists(os.path.join(run_dir, BEST_WEIGHTS)) else LAST_WEIGHTS
    model.load_weights(os.path.join(run_dir, chosen))
    save_model_weights(model, os.path.join(run_dir, WEIGHTS))
    results, timing = _summaries(experiment, backend, loader.workers, throughput, chosen,
                                 started)
    return _write_results(model, run_dir, evaluation, results, timing)


def _seeded_model(experiment: Experiment, manifest: Manifest, steps: int, backend: str):
    """Seed Keras with ``experiment.seed``, then the compiled model
    (:func:`tfdldl.model_setup.build_compiled_model`), XLA-compiled under JAX."""
    import keras

    from tfdldl.model_setup import build_compiled_model

    keras.utils.set_random_seed(experiment.seed)
    if backend == "jax":  # XLA is the JAX backend's only fast path
        experiment = dataclasses.replace(
            experiment, train=dataclasses.replace(experiment.train, jit_compile=True))
    return build_compiled_model(experiment, manifest, steps)


def _summaries(experiment: Experiment, backend: str, workers: int, throughput, chosen: str,
               started: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results before evaluation: experiment, backend, epochs, which weights, wall seconds
    since ``started`` (time.perf_counter); timing: backend, device, sizes, throughput)."""
    timing = {"backend": backend, "device": device_name(backend), "host_workers": workers,
              "cpu_count": os.cpu_count(), "batch_size": experiment.train.batch_size,
              "image_size": experiment.model.input_size, **throughput.summary()}
    return {
        "experiment": experiment.name, "backend": backend, "device": timing["device"],
        "epochs_planned": experiment.train.epochs, "epochs_done": len(throughput.epochs),
        "stopped_by_time_limit": throughput.stopped_by_time_limit,
        "weights": "best validation MAE" if chosen == BEST_WEIGHTS else "last epoch",
        "seconds": time.perf_counter() - started}, timing


def _validation(model, manifest: Manifest, split):
    """(images, targets) of the decoded validation split, or None without one."""
    if split is None:
        return None
    from tfdldl import heads

    images, faces = split
    return images, host_pipeline.make_targets(faces, np.arange(len(faces)),
                                              heads.of_model(model), manifest.label_space)


def _read_data(experiment: Experiment, manifest: Manifest):
    """(training faces, steps per epoch, {val/test split: (decoded uint8 images, faces)})."""
    batch = experiment.train.batch_size
    started = time.perf_counter()
    train_faces = tfrecord_reader.read_split(manifest, experiment.data.train_split)
    steps = experiment.train.steps_per_epoch or len(train_faces) // batch
    if steps == 0:
        raise ManifestError(f"split '{experiment.data.train_split}' of {manifest.root} has "
                            f"{len(train_faces)} records, fewer than one batch of {batch}; "
                            "lower train.batch_size or build more data")
    evaluation = {split: _decoded_split(manifest, split, experiment.model.input_size)
                  for split in (experiment.data.val_split, experiment.data.test_split) if split}
    log.info("read %d training faces (+ %s) in %.1f s", len(train_faces),
             ", ".join(f"{len(v[0])} {k}" for k, v in evaluation.items()) or "no others",
             time.perf_counter() - started)
    return train_faces, steps, evaluation


def _fit(model, experiment: Experiment, stream, steps: int, validation, throughput) -> None:
    """``model.fit`` with the run's callbacks (NaN stop, learning rate, learned loss weights,
    throughput, CSV log, last and best weights); raises TrainingStopped on a NaN/Inf loss."""
    import keras

    from tfdldl import callbacks as callbacks_module
    from tfdldl.loss_weighting import LossWeightLog

    run_dir = experiment.run_dir
    stop = callbacks_module.StopOnNaN()
    callbacks = [stop, callbacks_module.LearningRateLog(), LossWeightLog(), throughput,
                 keras.callbacks.CSVLogger(os.path.join(run_dir, CSV_LOG)),
                 keras.callbacks.ModelCheckpoint(os.path.join(run_dir, LAST_WEIGHTS),
                                                 save_weights_only=True)]
    if validation is not None:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            os.path.join(run_dir, BEST_WEIGHTS), monitor=MONITOR, mode="min",
            save_best_only=True, save_weights_only=True))
    model.fit(stream, steps_per_epoch=steps, epochs=experiment.train.epochs, shuffle=False,
              validation_data=validation, validation_batch_size=experiment.train.batch_size,
              callbacks=callbacks, verbose=experiment.train.verbose)
    if stop.stopped_at:
        raise run_folder.nan_stop(stop.stopped_at, "Lower optimizer.learning_rate or try "
                                  "loss.kl_normalization=mean")


def _write_results(model, run_dir: str, evaluation: dict, results: dict[str, Any],
                   timing: dict[str, Any]) -> dict[str, Any]:
    """Add each evaluation split's MAEs to ``results``; write timing.json and results.json."""
    batch = timing["batch_size"]
    for split, (images, faces) in evaluation.items():
        results[split] = split_mae(model, images, faces.field(example_schema.LABEL), batch)
        log.info("%s MAE %.3f (flip-averaged %.3f) on %d faces", split,
                 results[split]["mae"], results[split]["mae_flip_averaged"], len(faces))
    results["timing"] = timing
    write_json(os.path.join(run_dir, TIMING), timing)
    write_json(os.path.join(run_dir, RESULTS), results)
    log.info("steady state: %.0f images/s, waited for data %.1f%% of the time; wrote %s",
             timing["steady"]["images_per_second"], 100 * timing["steady"]["data_wait_share"],
             os.path.join(run_dir, WEIGHTS))
    return results


def device_name(backend: str) -> str:
    """The accelerator (or CPU) the Keras backend computes on, in words."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{getattr(device, 'device_kind', '')}"
    if backend == "torch":
        import torch

        return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
    return backend


def save_model_weights(model, path: str) -> None:
    """Save the network's weights alone (no optimizer state: a third of a compiled save).

    ``Model.save_weights`` of a compiled model also stores Adam's two moment tensors per
    weight, which would triple the file that has to travel back from the GPU machine.
    """
    bare = type(model).from_config(model.get_config())  # (clone_model would compile it)
    bare.set_weights(model.get_weights())
    bare.save_weights(path)


def split_mae(model, images: np.ndarray, labels: np.ndarray, batch_size: int) -> dict[str, Any]:
    """MAE of ``model`` on ``images`` (uint8 [N, S, S, 3]), plain and flip-averaged.

    Flip averaging (the paper's test protocol) is :func:`tfdldl.heads.flip_average`, as in
    the exported model.
    """
    import keras

    from tfdldl import heads, metrics, models

    head = heads.of_model(model)
    grid = models.label_space_of(model).grid
    plain, mirrored = (head.summarise(model.predict(batch, batch_size=batch_size, verbose=0),
                                      grid) for batch in (images, images[:, :, ::-1]))
    averaged = keras.ops.convert_to_numpy(heads.flip_average(plain, mirrored, grid)[heads.VALUE])
    plain = keras.ops.convert_to_numpy(plain[heads.VALUE])
    return {"count": int(len(labels)), "mae": float(metrics.mae(plain, labels)),
            "mae_flip_averaged": float(metrics.mae(averaged, labels)),
            "value": plain.astype(np.float32).round(4).tolist(),
            "value_flip_averaged": averaged.astype(np.float32).round(4).tolist()}


def _decoded_split(manifest: Manifest, split: str, size: int):
    """(uint8 [N, S, S, 3] decoded faces, FaceArrays) of ``split``."""
    faces = tfrecord_reader.read_split(manifest, split)
    return host_pipeline.decode_all(faces, size), faces


def _prepare_run_dir(run_dir: str, experiment: Experiment, manifest: Manifest) -> None:
    """Create the run folder, refuse a finished one, write config + label space, start train.log."""
    run_folder.refuse_finished(run_dir, "set another output_dir (--set output_dir=...) or "
                               "delete that folder")
    for split in (experiment.data.train_split, experiment.data.val_split,
                  experiment.data.test_split):
        if split:
            manifest.shards(split)  # fail early on a missing or empty split
    os.makedirs(run_dir, exist_ok=True)
    save_config(experiment, os.path.join(run_dir, CONFIG))
    write_json(os.path.join(run_dir, LABEL_SPACE), manifest.label_space.to_dict())
    run_folder.start_log(log, run_dir)


def load_run_model(run_dir: str, overrides: Sequence[str] = ()):
    """The network of a finished run with its ``model.weights.h5``, on the active backend.

    Built from the run's config.yaml (plus ``overrides``) and label_space.json, so no data
    is needed. Returns an uncompiled ``keras.Model``.

    Raises:
      RunFolderError: a file of the run is missing.
    """
    from tfdldl import model_setup

    paths = {name: os.path.join(run_dir, name) for name in (CONFIG, LABEL_SPACE, WEIGHTS)}
    missing = [name for name, path in paths.items() if not os.path.exists(path)]
    if missing:
        raise RunFolderError(f"{run_dir} lacks {', '.join(missing)}: it is not a finished "
                             "backend_train run (bring model.weights.h5 back beside its "
                             "config.yaml and label_space.json)")
    experiment = load_experiment(paths[CONFIG], overrides)
    with open(paths[LABEL_SPACE], encoding="utf-8") as handle:
        label_space = LabelSpace.from_dict(json.load(handle))
    model = model_setup.build_network(experiment, label_space)
    model.load_weights(paths[WEIGHTS])
    return model


def export_run(run_dir: str, overrides: Sequence[str] = ()) -> str:
    """Export a finished backend_train run with TensorFlow: model.keras + SavedModel.

    Args:
      run_dir: the run folder (config.yaml, label_space.json, model.weights.h5).
      overrides: ``key=value`` changes to its config (e.g. ``export.version=2``).
    Returns:
      The SavedModel's version folder.
    Raises:
      RunFolderError: a file of the run is missing.
      RuntimeError: Keras does not run on TensorFlow in this process.
      FileExistsError: that SavedModel version exists already.
    """
    import keras

    from tfdldl import export

    model = load_run_model(run_dir, overrides)
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("--export_from writes a TensorFlow SavedModel: run it with "
                           "KERAS_BACKEND=tensorflow (the default)")
    experiment = load_experiment(os.path.join(run_dir, CONFIG), overrides)
    config = to_dict(experiment)
    if os.path.isdir(experiment.data.tfrecords):
        config[TRAINING_FACES_KEY] = read_manifest(experiment.data.tfrecords).face_alignment()
    export.save_keras(model, os.path.join(run_dir, KERAS_MODEL), config.get(TRAINING_FACES_KEY))
    path = export.export_saved_model(model, experiment.export.saved_models_dir,
                                     experiment.export_name, experiment.export.version, config)
    export.write_models_config(experiment.export.saved_models_dir)
    return path


def main(argv: Sequence[str]) -> int:
    """absl entry point: exit 2 with a one-line message on bad input, 1 on a NaN stop."""
    from absl import flags

    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    values = flags.FLAGS
    try:
        if values.export_from:
            print(export_run(values.export_from, values.set or []))
            return 0
        if not values.config:
            print("error: give --config (to train) or --export_from RUN_DIR", file=sys.stderr)
            return 2
        experiment = load_experiment(values.config, values.set or [])
        train(experiment, values.workers, values.time_limit_s)
    except (ConfigError, ManifestError, RunFolderError, tfrecord_reader.TFRecordError,
            host_pipeline.HostPipelineError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingStopped as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def define_flags() -> None:
    """The command-line flags of ``python -m tfdldl.backend_train``."""
    from absl import flags

    cli.define_config_flags("configs/utkface_tiny_gpu.yaml", required=False)
    flags.DEFINE_integer("workers", None, "Host-pipeline worker processes (default: all "
                         "cores but one).")
    flags.DEFINE_float("time_limit_s", None, "Stop at an epoch end before training would "
                       "pass this many seconds.")
    flags.DEFINE_string("export_from", None, "Export this finished run folder as a "
                        "SavedModel (TensorFlow backend) instead of training.")


def run() -> None:
    """Console-script style entry point."""
    cli.run_main(main, define_flags)


if __name__ == "__main__":
    run()
