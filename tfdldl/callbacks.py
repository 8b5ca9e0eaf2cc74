"""Small Keras callbacks used by tfdldl.train (besides tfdldl.resume.StepBackup)."""

from __future__ import annotations

import logging
import math
import os
from typing import Optional

import keras

from tfdldl import safe_io

log = logging.getLogger("tfdldl.train")


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras' TerminateOnNaN (stop cleanly at a NaN/Inf loss) that remembers where.

    Attributes:
      stopped_at: (epoch, step within the epoch, loss) of the bad step, or None.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.stopped_at: Optional[tuple[int, int, float]] = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        if self.model.stop_training and self.stopped_at is None:
            self.stopped_at = (self.epoch, batch, float((logs or {}).get("loss", "nan")))


class LearningRateLog(keras.callbacks.Callback):
    """Adds the learning rate at each epoch's end to its logs (so CSV and TensorBoard show it)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))


class BestCheckpoint(keras.callbacks.Callback):
    """Keep the weights of the epoch with the lowest ``monitor`` in one ``.weights.h5`` file.

    Unlike ``keras.callbacks.ModelCheckpoint`` (which writes the file in place, so a kill
    during the write leaves a truncated file that every rerun trips over), the file is
    written under a temporary name and renamed (tfdldl.safe_io), and weights that are not
    all finite are never written: the file always holds a usable model.

    Args:
      path: the weights file (ends in ``.weights.h5``).
      monitor: the logs key to minimise, e.g. "val_value_mae".
      best: the value to beat (the best of the epochs before a resume), or None.
    """

    def __init__(self, path: str, monitor: str, best: Optional[float] = None):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.best = math.inf if best is None else float(best)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) >= self.best:
            return
        from tfdldl.resume import all_finite

        if not all_finite(self.model.get_weights()):
            log.warning("epoch %d: %s %.4g but the weights are not finite; %s not updated",
                        epoch, self.monitor, float(value), os.path.basename(self.path))
            return
        with safe_io.atomic_path(self.path, suffix=".weights.h5") as partial:
            self.model.save_weights(partial, overwrite=True)
        self.best = float(value)


def usable_weights_file(path: str) -> bool:
    """Whether ``path`` is a complete HDF5 file (False for a truncated or garbled one)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            handle.visit(lambda name: None)
        return True
    except (OSError, RuntimeError, ValueError):
        return False
