"""The run folder of a training run, shared by ``tfdldl.train`` and ``tfdldl.backend_train``.

One place names the files a run writes, holds the two errors a run can end with
(:class:`RunFolderError`, :class:`TrainingStopped`: both CLIs raise and catch the same
classes) and sets up the folder: refuse a finished run, clean up what a kill left, write
the resolved config, start ``train.log``. Imports nothing heavy (no TensorFlow, no Keras).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Sequence

from tfdldl import safe_io

CONFIG = "config.yaml"
TRAIN_LOG = "train.log"
CSV_LOG = "training_log.csv"
BEST_WEIGHTS = "best.weights.h5"
KERAS_MODEL = "model.keras"
RESULTS = "results.json"
BACKUP = "backup"
TENSORBOARD = "tensorboard"
# The validation metric that picks the best weights: Keras logs the metric "mae" of the
# "value" output (tfdldl.metrics) as "val_value_mae".
MONITOR = "val_value_mae"


class RunFolderError(ValueError):
    """The run folder holds a finished run, a backup of another run's settings, or lacks
    what an export needs."""


class TrainingStopped(RuntimeError):
    """Training stopped before the planned epochs (NaN/Inf loss)."""


def nan_stop(stopped_at: tuple, advice: str) -> TrainingStopped:
    """The error for a NaN/Inf stop at ``stopped_at`` = (epoch, step, loss), with ``advice``."""
    epoch, step, loss = stopped_at
    return TrainingStopped(f"training stopped: the loss became {loss} at epoch {epoch}, "
                           f"step {step}. {advice}")


def refuse_finished(run_dir: str, fresh: str, resumable: bool = False) -> None:
    """Raise RunFolderError when ``run_dir`` holds a finished run (its results file), unless
    ``resumable`` and a backup shows the run is still under way; ``fresh`` says what to do."""
    if os.path.exists(os.path.join(run_dir, RESULTS)) and not (
            resumable and os.path.exists(os.path.join(run_dir, BACKUP))):
        raise RunFolderError(f"{run_dir} holds a finished run ({RESULTS} exists); {fresh}")


def refuse_links(run_dir: str, names: Sequence[str]) -> None:
    """Refuse (tfdldl.safe_io.UnsafePathError) files of the run that are symbolic links."""
    for name in names:
        if os.path.islink(os.path.join(run_dir, name)):
            raise safe_io.refuse_link(os.path.join(run_dir, name))


def remove_leftovers(run_dir: str) -> None:
    """Delete the temporaries (tfdldl.safe_io names) that a kill left in ``run_dir``."""
    pattern = re.compile(r"^\.(.+)\.partial-")
    names = set()
    for name in os.listdir(run_dir):
        match = pattern.match(name)
        if match:
            names.add(match.group(1))
        elif name.startswith(".partial-") and name.endswith(".keras"):  # older versions
            os.remove(os.path.join(run_dir, name))
    for name in names:
        safe_io.remove_temporaries(os.path.join(run_dir, name))


def start_log(log: logging.Logger, run_dir: str) -> None:
    """Send ``log`` to ``<run_dir>/train.log`` (appended) and stdout, nowhere else.

    Handlers a previous run in this process opened on files are closed first.
    """
    os.makedirs(run_dir, exist_ok=True)
    handler = logging.StreamHandler(safe_io.open_append(os.path.join(run_dir, TRAIN_LOG)))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for old in log.handlers:
        if getattr(old, "stream", None) not in (sys.stdout, sys.stderr):
            old.close()
    log.handlers = [handler, logging.StreamHandler(sys.stdout)]
    log.setLevel(logging.INFO)
    log.propagate = False
