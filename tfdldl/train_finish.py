"""The end of a ``tfdldl.train`` run: chosen weights -> model.keras, SavedModel, test metrics.

Also judges whether the model learned anything: a run whose best validation MAE is no
better than predicting the training labels' mean for every face says so
(``"no_better_than_mean"`` in results.json).
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any, Optional

from tfdldl.config import to_dict
from tfdldl.inference import TRAINING_FACES_KEY
from tfdldl.jsonio import write_json
from tfdldl.run_folder import BEST_WEIGHTS, CSV_LOG, KERAS_MODEL, MONITOR, RESULTS

if TYPE_CHECKING:
    from tfdldl import resume
    from tfdldl.experiment import Experiment
    from tfdldl.manifest import Manifest
    from tfdldl.train_loop import Plan

log = logging.getLogger("tfdldl.train")


def finish(model, experiment: Experiment, manifest: Manifest, plan: Plan,
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
    shown = f"{mae:.4g}" if isinstance(mae, (int, float)) else str(mae)
    return {"split": split, "mae": mae, "mean_predictor_mae": baseline,
            "message": (f"the model is no better than predicting the training mean "
                        f"{center:.4g} for every face: {split} MAE {shown} vs {baseline:.4g}. "
                        "It learned nothing usable; lower optimizer.learning_rate, train "
                        "longer, or check the data and labels")}


def _labels(manifest: Manifest, split: str):
    """float32 [N]: the labels of ``split``, read from its shards."""
    import numpy as np
    import tensorflow as tf

    from tfdldl import example_schema
    from tfdldl.example_spec import feature_spec

    feature = feature_spec([example_schema.LABEL])
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
