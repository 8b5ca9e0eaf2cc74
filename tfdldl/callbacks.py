"""Small Keras callbacks used by tfdldl.train (besides tfdldl.resume.StepBackup)."""

from __future__ import annotations

from typing import Optional

import keras


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
