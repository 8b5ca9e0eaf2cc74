"""Resuming a killed training run at the step it had reached, not at the start of its epoch.

Why not plain ``keras.callbacks.BackupAndRestore`` (Keras 3.15): with an integer
``save_freq`` it saves mid-epoch weights, but on restore it only sets the epoch and
training restarts at the FIRST batch of that epoch, so the batches already done in that
epoch are trained a second time (with a data order that starts over); and it writes the
weights file in place, so a kill during the write leaves a corrupt backup.

:class:`StepBackup` keeps BackupAndRestore's job and fixes both: the backup (weights AND
optimizer state, one ``.weights.h5`` file) is written to a temporary name and renamed,
and the position is read from the restored optimizer's step counter, so the weights and
the position can never disagree. tfdldl.train then restarts the data stream at exactly
that global step (``input_pipeline.make_dataset(first_epoch=..., skip_batches=...)``) and
runs the rest of the interrupted epoch before the remaining ones. Steps after the last
backup are lost and redone; none is done twice in the final model.

Also :func:`truncate_csv_log`, so the CSV log keeps one row per finished epoch across
restarts.
"""

from __future__ import annotations

import csv
import os
import shutil

import keras

BACKUP_NAME = "backup.weights.h5"


class StepBackup(keras.callbacks.Callback):
    """Back up weights + optimizer every ``every_steps`` steps and at each epoch end.

    Args:
      backup_dir: a folder of its own (deleted by :meth:`remove` when the run finished).
      every_steps: training steps between backups.
      writer: whether this process writes (False on non-chief workers).
    """

    def __init__(self, backup_dir: str, every_steps: int, writer: bool = True):
        super().__init__()
        self.backup_dir = backup_dir
        self.every_steps = int(every_steps)
        self.writer = writer
        self.path = os.path.join(backup_dir, BACKUP_NAME)

    def restore(self, model: keras.Model) -> int:
        """Load the backup into ``model`` (built and compiled) if there is one.

        Returns:
          The number of training steps the restored state has done (0 without a backup).
        """
        if not os.path.exists(self.path):
            return 0
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.path)
        return int(keras.ops.convert_to_numpy(model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        """Back up every ``every_steps`` global steps (not after a NaN stop)."""
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step % self.every_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        """Back up at every epoch end."""
        self.save()

    def save(self) -> None:
        """Write the backup atomically (temporary name, then rename)."""
        if not self.writer or self.model.stop_training:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        partial = os.path.join(self.backup_dir, "partial-" + BACKUP_NAME)
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, self.path)

    def remove(self) -> None:
        """Delete the backup folder (call once the run's outputs are all written)."""
        if self.writer:
            shutil.rmtree(self.backup_dir, ignore_errors=True)


def truncate_csv_log(path: str, first_epoch: int) -> list[dict[str, str]]:
    """Keep only the rows of epochs < ``first_epoch`` in a keras CSVLogger file.

    A run resumed at ``first_epoch`` will log that epoch and the later ones again;
    dropping them first keeps exactly one row per epoch. Rewritten atomically.

    Returns:
      The kept rows (dicts keyed by the CSV header).
    """
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        rows = [row for row in reader if int(row["epoch"]) < first_epoch]
    partial = path + ".partial"
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)
    return rows
