"""Training throughput per epoch, and how long the training loop waited for its input.

Used by tfdldl.backend_train to measure the host pipeline against the accelerator.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import keras

log = logging.getLogger("tfdldl.backend_train")


class ThroughputLog(keras.callbacks.Callback):
    """Per-epoch training throughput and the share of it spent waiting for the host pipeline.

    An epoch's training time runs from its start to the start of its validation (or its
    end); "waiting" is the time the training loop spent blocked in the host pipeline
    (``HostBatches.wait_seconds``) in that window. Adds ``images_per_second`` and
    ``data_wait_share`` to the epoch logs, and stops training at an epoch end when
    ``time_limit_s`` would be exceeded by one more epoch.

    Under JAX the steps are dispatched asynchronously, so while the loop waits for a
    batch the accelerator may still be working off earlier steps: the share is an upper
    bound on the time the accelerator sat idle for want of data.

    Args:
      loader: the HostBatches feeding ``fit``.
      images_per_epoch: batch size x steps per epoch.
      time_limit_s: training-time budget in seconds, or None.
    """

    def __init__(self, loader, images_per_epoch: int, time_limit_s: Optional[float] = None):
        super().__init__()
        self.loader, self.images_per_epoch, self.time_limit_s = loader, images_per_epoch, time_limit_s
        self.epochs: list[dict[str, float]] = []
        self.stopped_by_time_limit = False

    def on_train_begin(self, logs=None):
        self._train_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._wait = time.perf_counter(), self.loader.wait_seconds
        self._end = None

    def on_test_begin(self, logs=None):
        if self._end is None:
            self._end, self._end_wait = time.perf_counter(), self.loader.wait_seconds

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        if self._end is None:
            self._end, self._end_wait = now, self.loader.wait_seconds
        seconds = self._end - self._start
        waited = self._end_wait - self._wait
        record = {"epoch": epoch, "train_seconds": seconds, "wait_seconds": waited,
                  "epoch_seconds": now - self._start,
                  "images_per_second": self.images_per_epoch / seconds,
                  "data_wait_share": waited / seconds}
        self.epochs.append(record)
        if logs is not None:
            logs["images_per_second"] = record["images_per_second"]
            logs["data_wait_share"] = record["data_wait_share"]
        if self.time_limit_s is not None:
            elapsed = now - self._train_start
            longest = max(entry["epoch_seconds"] for entry in self.epochs[1:] or self.epochs)
            if elapsed + longest > self.time_limit_s:
                self.stopped_by_time_limit = True
                self.model.stop_training = True
                log.warning("stopping after epoch %d: another epoch (%.0f s) would pass "
                            "--time_limit_s=%.0f (%.0f s used); the learning-rate schedule "
                            "was planned for train.epochs, so lower it to match",
                            epoch + 1, longest, self.time_limit_s, elapsed)

    def summary(self) -> dict:
        """Per-epoch rows, the first epoch (with compilation) pooled, and the others pooled."""

        def pooled(rows):
            seconds = sum(row["train_seconds"] for row in rows)
            waited = sum(row["wait_seconds"] for row in rows)
            return {"epochs": len(rows), "train_seconds": seconds,
                    "images_per_second": len(rows) * self.images_per_epoch / seconds,
                    "data_wait_share": waited / seconds}

        steady = self.epochs[1:] or self.epochs
        return {"images_per_epoch": self.images_per_epoch,
                "first_epoch": pooled(self.epochs[:1]), "steady": pooled(steady),
                "per_epoch": self.epochs}
