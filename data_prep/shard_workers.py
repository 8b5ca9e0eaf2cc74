"""The worker processes of data_prep.build: planned shards aligned, encoded and written in
parallel, with a progress line.

Each process (spawned: TensorFlow does not survive fork) runs TensorFlow on one thread
and holds its own MTCNN (:meth:`data_prep.shard_job.Settings.aligner`); the processes are
the parallelism. A shard is one unit of work (:func:`data_prep.shard_job.run`), the
largest first, and the workers add their images done and skipped to two shared counters
from which the progress line is made.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from typing import Any, Callable

from data_prep import shard_job

PROGRESS_SECONDS = 5.0

_worker_aligner = None
_worker_counters = None


def _init_worker(settings: shard_job.Settings, counters) -> None:
    """Per process: one TF thread (the processes are the parallelism) and one MTCNN."""
    global _worker_aligner, _worker_counters
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    _worker_aligner = settings.aligner()
    _worker_counters = counters


def _run_in_worker(task_and_dir) -> dict[str, Any]:
    task, out_dir = task_and_dir
    return shard_job.run(task, out_dir, _worker_aligner, _count_progress)


def _count_progress(done: int, skipped: int) -> None:
    with _worker_counters.get_lock():
        _worker_counters[0] += done
        _worker_counters[1] += skipped


def align_shards(tasks: list[shard_job.ShardTask], out_dir: str, workers: int,
                 log: Callable[[str], None]) -> None:
    """Build ``tasks`` in ``workers`` processes, giving ``log`` a progress line every
    :data:`PROGRESS_SECONDS` seconds (images done, images/s, ETA, skips, shards done)."""
    if not tasks:
        return
    total = sum(len(task.items) for task in tasks)
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    counters = context.Array("q", 2)
    # Largest shards first, so no worker is left with a big one at the end.
    ordered = sorted(tasks, key=lambda task: -len(task.items))
    start = time.monotonic()
    with context.Pool(min(workers, len(tasks)), _init_worker,
                      (tasks[0].settings, counters)) as pool:
        results = pool.imap_unordered(_run_in_worker, [(task, out_dir) for task in ordered])
        finished = 0
        while finished < len(tasks):
            try:
                results.next(timeout=PROGRESS_SECONDS)
                finished += 1
            except multiprocessing.TimeoutError:
                pass
            log(_progress_line(counters[0], counters[1], total, finished, len(tasks),
                               time.monotonic() - start))


def _progress_line(done: int, skipped: int, total: int, shards_done: int, shards: int,
                   elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("nan")
    eta_text = f"{eta / 60:.1f} min" if math.isfinite(eta) else "?"
    return (f"  {done}/{total} images ({100 * done / max(total, 1):.0f}%), {rate:.1f} images/s, "
            f"ETA {eta_text}, skipped {skipped}, shards {shards_done}/{shards}")
