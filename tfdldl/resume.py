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

A backup belongs to one run: ``backup/state.json`` holds the fingerprint of the settings
that shape the training (:meth:`StepBackup.check_or_start`) and of the data, and a rerun
with other settings or other data is refused (:class:`BackupMismatch`) instead of
resuming the old state under the new settings' name. Backups with non-finite weights are
never written, so the backup is always a state worth resuming.

Also :func:`truncate_csv_log`, so the CSV log keeps one row per finished epoch across
restarts (an empty or header-less log, as a kill in the first epoch leaves, is dropped).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from typing import Any, Optional

import keras
import numpy as np

from tfdldl import safe_io
from tfdldl.jsonio import write_json

BACKUP_NAME = "backup.weights.h5"
STATE_NAME = "state.json"
# The temporary name older versions used (a kill could leave it behind).
_LEGACY_PARTIAL = "partial-" + BACKUP_NAME

log = logging.getLogger("tfdldl.train")


class BackupMismatch(ValueError):
    """The backup was written by a run with other settings or other data."""


def fingerprint(identity: Any) -> str:
    """SHA-256 (hex) of ``identity``'s canonical JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts, as ``key: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
        return found
    return [] if old == new else [f"{prefix or '<value>'}: {old!r} -> {new!r}"]


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
        self.state_path = os.path.join(backup_dir, STATE_NAME)
        # The optimizer step of the newest backup on disk (None: none yet).
        self.saved_step: Optional[int] = None
        # The step of the newest state NOT backed up because its weights were not finite.
        self.refused_step: Optional[int] = None

    def exists(self) -> bool:
        """Whether a backup (weights + optimizer state) is on disk."""
        return os.path.exists(self.path)

    def check_or_start(self, identity: dict[str, Any], fresh_hint: str) -> None:
        """Make sure the backup on disk (if any) belongs to a run of ``identity``.

        Args:
          identity: JSON-able settings and data that determine the training (the caller
            leaves out what may change on a resume, such as verbosity).
          fresh_hint: how to start fresh instead, for the refusal's message.
        Raises:
          BackupMismatch: the backup's state.json records another identity; the message
            lists the differing keys.
        """
        state = self._read_state()
        if self.exists() and state is not None and state.get("fingerprint") != fingerprint(
                identity):
            changed = differences(state.get("identity", {}), identity)
            raise BackupMismatch(
                f"{self.backup_dir} holds the resumable state of a run with other settings "
                f"or data ({'; '.join(changed[:6]) or 'fingerprint differs'}"
                f"{'; ...' if len(changed) > 6 else ''}). Resuming it would record the new "
                "settings for a model trained with the old ones. Rerun with the original "
                f"settings to resume (recorded in {self.state_path}), or start fresh: "
                f"{fresh_hint}")
        if self.exists() and state is None:
            log.warning("%s has no %s (written by an older tfdldl): resuming it without "
                        "checking its settings", self.backup_dir, STATE_NAME)
        if self.writer and (state is None or not self.exists()):
            os.makedirs(self.backup_dir, exist_ok=True)
            write_json(self.state_path, {"fingerprint": fingerprint(identity),
                                         "identity": identity})

    def note_export(self, path: str) -> None:
        """Record that this run is about to export to ``path`` (see :meth:`exported`)."""
        if self.writer:
            state = self._read_state() or {}
            write_json(self.state_path, {**state, "export": os.path.abspath(path)})

    def exported(self) -> Optional[str]:
        """The export path recorded by :meth:`note_export`, if any: a folder there was
        written by this run (it did not exist when the run recorded it)."""
        return (self._read_state() or {}).get("export")

    def _read_state(self) -> Optional[dict[str, Any]]:
        try:
            with open(self.state_path, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as error:
            raise BackupMismatch(f"{self.state_path} is unreadable ({error}); start fresh: "
                                 f"delete {self.backup_dir}") from None

    def restore(self, model: keras.Model) -> int:
        """Load the backup into ``model`` (built and compiled) if there is one.

        Also deletes temporary files that a killed backup write left behind.

        Returns:
          The number of training steps the restored state has done (0 without a backup).
        """
        if self.writer:
            safe_io.remove_temporaries(self.path)
            if os.path.exists(os.path.join(self.backup_dir, _LEGACY_PARTIAL)):
                os.remove(os.path.join(self.backup_dir, _LEGACY_PARTIAL))
        if not self.exists():
            return 0
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.path)
        self.saved_step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        return self.saved_step

    def on_train_batch_end(self, batch, logs=None):
        """Back up every ``every_steps`` global steps (not after a NaN stop)."""
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step % self.every_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        """Back up at every epoch end."""
        self.save()

    def save(self) -> None:
        """Write the backup atomically (temporary name, then rename), if the weights are
        finite: a state that already diverged is not worth resuming."""
        if not self.writer or self.model.stop_training:
            return
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if not all_finite(self.model.get_weights()):
            self.refused_step = step
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        with safe_io.atomic_path(self.path, suffix=".weights.h5") as partial:
            self.model.save_weights(partial, overwrite=True)
        self.saved_step = step

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
    if os.path.islink(path):
        raise safe_io.refuse_link(path)
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        rows = [row for row in reader if _epoch(row) is not None and _epoch(row) < first_epoch]
    if "epoch" not in fields or not rows:
        # Killed before its first row (or its header): Keras' CSVLogger writes a new header
        # into a missing or empty file, so drop it rather than keep a header-less stub.
        os.remove(path)
        return []
    with safe_io.atomic_file(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _epoch(row: dict[str, str]) -> Optional[int]:
    """A CSV row's epoch number, None for a row cut short by a kill."""
    try:
        return int(row.get("epoch") or "")
    except ValueError:
        return None


def all_finite(weights) -> bool:
    """True when every floating-point array in ``weights`` holds only finite numbers."""
    arrays = (np.asarray(w) for w in weights)
    return all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")
