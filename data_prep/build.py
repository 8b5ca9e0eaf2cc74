"""``python -m data_prep.build --config configs/data/<set>.yaml [--set key=value ...]``.

Raw photos and labels in, aligned, leak-free, sharded TFRecords out:

1. the dataset adapter lists records, and skips (malformed names, missing files...);
2. labels outside the label space are skipped (``label_out_of_range``);
3. duplicate groups are found and splits assigned by group (and subject), so no
   duplicate or person straddles two splits;
4. each split is shuffled (seeded) and cut into shards; every shard is planned before any
   alignment, so a shard is one unit of parallel work and of resuming;
5. worker processes (each with its own MTCNN) read, align, encode and write the shards
   that are not finished yet (atomic ``.partial`` + rename), with a progress line;
6. ``skipped.tsv``, ``contact_sheet.png`` and, last, ``manifest.json`` are written and
   a summary printed.

Rerunning after a kill rebuilds only the unfinished shards. A shard counts as finished
only while its file still has the size and SHA-256 its sidecar recorded and its plan
(settings, members and the SHA-256 of every member's source bytes) is unchanged, so a
source image replaced in place or a shard damaged or copied in after the build is
rebuilt. The manifest records every shard's size, SHA-256 and record count and a
fingerprint of the whole build; readers (tfdldl.tfrecord_reader.verify_shards) refuse a
shard that does not match, naming it.

One build at a time writes into an output folder (a lock; a second one is refused), and
no file is written through a symbolic link planted in it. Config errors, a missing
dataset and a busy folder exit with status 2 and one line naming the problem.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import multiprocessing
import os
import re
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np

from data_prep import shard_job
from data_prep.adapters.base import Record, Skip
from data_prep.config import DataConfig, check, load_data_config, sigma_of
from tfdldl import cli, example_schema, safe_io
from tfdldl.config import ConfigError, to_dict
from tfdldl.manifest import write_manifest

SKIPPED_LIST = "skipped.tsv"
CONTACT_SHEET = "contact_sheet.png"
PROGRESS_SECONDS = 5.0
# A mean crop coverage below this is warned about (see summary()).
LOW_COVERAGE = 0.9


def _print(line: str) -> None:
    """Progress goes to stdout unbuffered, so a log file of a background run stays current."""
    print(line, flush=True)


class BuildError(RuntimeError):
    """A build that cannot start or finish; the message says what to fix."""


# -- planning -----------------------------------------------------------------------------


def collect(config: DataConfig) -> tuple[list[Record], list[Skip]]:
    """Records inside the label space, and skips (the adapter's and label_out_of_range)."""
    from data_prep.adapters import make_adapter

    try:
        adapter = make_adapter(config.adapter.name, **config.adapter.options)
        items = list(adapter.records())
    except (FileNotFoundError, NotADirectoryError) as error:
        raise BuildError(f"dataset of '{config.dataset}' not found: {error}; fix "
                         "adapter.options in the config or fetch the data") from None
    records = [item for item in items if isinstance(item, Record)]
    skips = [item for item in items if isinstance(item, Skip)]
    space = config.label_space.build()
    inside = space.contains([record.label for record in records]) if records else []
    kept = []
    for record, ok in zip(records, inside):
        if ok:
            kept.append(record)
        else:
            skips.append(Skip(record.path, "label_out_of_range",
                              f"label {record.label:g} is outside {space.describe()}; widen "
                              "label_space in the config to keep it"))
    if config.limit:
        rng = np.random.default_rng(config.seed)
        chosen = np.sort(rng.permutation(len(kept))[:config.limit])
        kept = [kept[i] for i in chosen]
    return kept, skips


def split_records(config: DataConfig, records: list[Record]
                  ) -> tuple[list[str], dict[str, Any], dict[str, str]]:
    """Split name per record (duplicate- and subject-aware), the duplicate report, and
    path -> SHA-256 of each source file (hashed while duplicate detection reads it).

    Raises:
      SplitError (a ConfigError): the records cannot be split as configured, or (a bug)
        a duplicate group would straddle two splits.
    """
    from data_prep import duplicates, splits

    groups, report, digests = duplicates.find_groups_and_digests(
        records, config.duplicates.near_threshold, workers=config.workers)
    assignment = splits.assign_splits(records, groups, config.splits, config.seed)
    splits.check_no_straddling(groups, {r.path: s for r, s in zip(records, assignment)})
    report["straddling_groups"] = 0
    return assignment, report, digests


def plan(config: DataConfig, records: list[Record], assignment: Sequence[str],
         data_root: str, digests: Optional[dict[str, str]] = None
         ) -> list[shard_job.ShardTask]:
    """Every shard of every split, with its members, decided before any alignment.

    Within a split the records are shuffled with the config's seed (so shards mix labels),
    then cut into ceil(N / records_per_shard) contiguous shards of near-equal size.
    ``digests`` (path -> SHA-256 of the source file, from :func:`split_records`) become part
    of each item, so a source replaced in place changes its shard's fingerprint.
    """
    settings = _settings(config)
    by_split: dict[str, list[Record]] = collections.defaultdict(list)
    for record, split in zip(records, assignment):
        by_split[split].append(record)
    unknown = set(by_split) - set(example_schema.SPLITS)
    if unknown:
        raise BuildError(f"split assignment produced unknown splits {sorted(unknown)}; "
                         f"expected {example_schema.SPLITS}")
    tasks = []
    for split_index, split in enumerate(example_schema.SPLITS):
        members = by_split.get(split, [])
        order = np.random.default_rng([config.seed, split_index]).permutation(len(members))
        items = [_planned(members[i], config, data_root, (digests or {}).get(members[i].path, ""))
                 for i in order]
        count = math.ceil(len(items) / config.output.records_per_shard)
        for index in range(count):
            chunk = items[index * len(items) // count:(index + 1) * len(items) // count]
            tasks.append(shard_job.ShardTask(split, index, count, tuple(chunk), settings))
    return tasks


def _settings(config: DataConfig) -> shard_job.Settings:
    alignment = config.alignment
    return shard_job.Settings(
        label_space=config.label_space.build().to_dict(), output_size=alignment.output_size,
        min_face_size=alignment.min_face_size, thresholds=tuple(alignment.thresholds),
        scale_factor=alignment.scale_factor, max_side=alignment.max_side,
        framing=alignment.framing().to_dict(), on_no_face=alignment.on_no_face, jpeg_quality=config.output.jpeg_quality)


def _planned(record: Record, config: DataConfig, data_root: str, sha256: str) -> Record:
    """``record`` planned: its path absolute, its source relative to ``data_root``, its σ
    resolved by the config, the SHA-256 of its file recorded."""
    path = os.path.abspath(record.path)
    return dataclasses.replace(record, path=path, source=os.path.relpath(path, data_root),
                               label=float(record.label),
                               sigma=sigma_of(config.sigma, record.sigma),
                               gender=int(record.gender), group=int(record.group),
                               sha256=sha256)


def coverage_summary(coverages: list[float]) -> dict[str, Any] | None:
    """Distribution of the per-face share of the aligned crop inside its source photo.

    Returns:
      {"mean", "p10", "p50", "min", "below_0.9", "histogram": {bin lower edge: count}}
      (bins 0.0, 0.1, ..., 0.9), or None when there are no faces.
    """
    if not coverages:
        return None
    values = np.asarray(coverages, np.float64)
    counts, _ = np.histogram(values, bins=np.linspace(0.0, 1.0, 11))
    return {"mean": round(float(values.mean()), 4),
            "p10": round(float(np.percentile(values, 10)), 4),
            "p50": round(float(np.percentile(values, 50)), 4),
            "min": round(float(values.min()), 4),
            "below_0.9": int((values < 0.9).sum()),
            "histogram": {f"{edge:.1f}": int(n) for edge, n in zip(np.arange(10) / 10, counts)}}


# -- parallel alignment -------------------------------------------------------------------

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
                 log=_print) -> None:
    """Build ``tasks`` in ``workers`` processes, printing a progress line every few seconds."""
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


# -- reporting ----------------------------------------------------------------------------


def write_outputs(config: DataConfig, tasks: list[shard_job.ShardTask], sidecars: list[dict],
                  adapter_skips: list[Skip], duplicate_report: dict[str, Any], out_dir: str,
                  seconds: float, alignment_seconds: float, aligned_now: int) -> dict[str, Any]:
    """skipped.tsv, contact_sheet.png and (last) manifest.json; returns the manifest.

    Each sidecar gives its shard's "written" record count, "shard_bytes", "shard_sha256"
    (recorded in the manifest's "shards"), "faces" and "skips" (see shard_job.run).
    """
    from data_prep.contact_sheet import write_contact_sheet

    skips = [[skip.path, skip.reason, skip.detail] for skip in adapter_skips]
    skips += [skip for sidecar in sidecars for skip in sidecar["skips"]]
    with safe_io.atomic_file(os.path.join(out_dir, SKIPPED_LIST)) as handle:
        handle.write("path\treason\tdetail\n")
        for path, reason, detail in skips:
            handle.write(f"{path}\t{reason}\t{' '.join(str(detail).split())}\n")

    splits, histogram = {}, {}
    for split in example_schema.SPLITS:
        mine = [(task, sidecar) for task, sidecar in zip(tasks, sidecars) if task.split == split]
        labels = [face[1] for _, sidecar in mine for face in sidecar["faces"]]
        splits[split] = {"count": len(labels), "shards": [task.name for task, _ in mine]}
        counts = collections.Counter(f"{label:g}" for label in labels)
        histogram[split] = dict(sorted(counts.items(), key=lambda kv: float(kv[0])))

    faces = [face for sidecar in sidecars for face in sidecar["faces"]]
    detected = [face[2] for face in faces if face[3] == shard_job.ALIGNED]
    no_face = sum(1 for skip in skips if skip[1] == "no_face")
    fallback = len(faces) - len(detected)
    attempted = len(faces) + no_face
    train_shards = [os.path.join(out_dir, task.name) for task in tasks if task.split == "train"]
    sheet = write_contact_sheet(train_shards, os.path.join(out_dir, CONTACT_SHEET),
                                config.output.contact_sheet_faces)
    manifest = {
        "schema_version": example_schema.SCHEMA_VERSION,
        "dataset": config.dataset,
        "task": config.task,
        "label_space": config.label_space.build().to_dict(),
        "sigma": {"policy": config.sigma.policy, "value": config.sigma.value},
        "image_size": config.alignment.output_size,
        "splits": splits,
        "records": {"planned": sum(len(task.items) for task in tasks),
                    "written": len(faces)},
        "skips": {"total": len(skips),
                  "by_reason": dict(collections.Counter(skip[1] for skip in skips)),
                  "list": SKIPPED_LIST},
        "duplicates": duplicate_report,
        "label_histogram": histogram,
        "group": to_dict(config.group),
        "alignment": {
            "detector": "mtcnn",
            "attempted": attempted,
            "detected": len(detected),
            "center_cropped": fallback,
            "no_face": no_face,
            "detection_rate": len(detected) / attempted if attempted else None,
            "mean_confidence": float(np.mean(detected)) if detected else None,
            "settings": to_dict(config.alignment),
            "framing": config.alignment.framing().to_dict(),
            "coverage": coverage_summary([face[4] for face in faces if len(face) > 4]),
        },
        "contact_sheet": os.path.basename(sheet) if sheet else None,
        "build": build_fingerprint(tasks),
        "shards": {task.name: {"bytes": sidecar["shard_bytes"], "sha256": sidecar["shard_sha256"],
                               "records": sidecar["written"]}
                   for task, sidecar in zip(tasks, sidecars)},
        "config": to_dict(config),
        "seconds": round(seconds, 1),
        "this_run": {"images_aligned": aligned_now,
                     "alignment_seconds": round(alignment_seconds, 1)},
    }
    write_manifest(out_dir, manifest)
    return manifest


def summary(manifest: dict[str, Any], out_dir: str) -> str:
    """A few human lines about a finished build."""
    alignment, skips = manifest["alignment"], manifest["skips"]
    aligned_now = manifest["this_run"]["images_aligned"]
    seconds = manifest["this_run"]["alignment_seconds"]
    counts = ", ".join(f"{name} {info['count']}" for name, info in manifest["splits"].items())
    rate = alignment["detection_rate"]
    lines = [
        f"built {manifest['dataset']} into {out_dir} in {manifest['seconds']:.0f} s; "
        f"aligned {aligned_now} images in {seconds:.0f} s "
        f"({aligned_now / seconds if seconds else 0:.1f} images/s)",
        f"  records: {counts}",
        f"  faces detected {alignment['detected']}/{alignment['attempted']}"
        + (f" ({100 * rate:.1f}%)" if rate is not None else "")
        + f", centre-cropped fallback {alignment['center_cropped']}",
        f"  skipped {skips['total']}: "
        + (", ".join(f"{k} {v}" for k, v in sorted(skips['by_reason'].items())) or "none")
        + f" (list: {os.path.join(out_dir, SKIPPED_LIST)})",
    ]
    coverage = alignment.get("coverage")
    if coverage:
        lines.append(f"  crop coverage: mean {100 * coverage['mean']:.1f}%, 10th percentile "
                     f"{100 * coverage['p10']:.1f}% of each aligned crop lies inside its photo")
        if coverage["mean"] < LOW_COVERAGE:
            lines.append(
                f"  WARNING: on average only {100 * coverage['mean']:.0f}% of the aligned crops "
                "comes from the photos; the rest is border fill that users' photos will not "
                "have. Zoom in (raise alignment.template_scale) or move the face "
                "(alignment.template_offset_y) until the mean is >= 95%.")
    if manifest.get("contact_sheet"):
        lines.append(f"  look at the aligned faces: {os.path.join(out_dir, manifest['contact_sheet'])}")
    return "\n".join(lines)


# -- the job ------------------------------------------------------------------------------


def build_fingerprint(tasks: Sequence[shard_job.ShardTask]) -> str:
    """SHA-256 over the fingerprints of every planned shard: what this build is."""
    return hashlib.sha256("".join(task.fingerprint() for task in tasks).encode()).hexdigest()


def build(config: DataConfig, log=_print) -> dict[str, Any]:
    """Run a whole build (resuming finished shards); returns the manifest dict.

    Raises:
      BuildError: no usable records, a shard that did not finish, another build writing
        into the same folder, or a symbolic link where the build's own files belong.
    """
    out_dir = os.path.abspath(config.output.dir)
    try:
        with safe_io.FolderLock(out_dir, "build"):
            return (_build if config.runner.name == "local" else _beam_build)(config, out_dir, log)
    except (safe_io.FolderBusyError, safe_io.UnsafePathError) as error:
        raise BuildError(str(error)) from None


def _build(config: DataConfig, out_dir: str, log) -> dict[str, Any]:
    start = time.monotonic()
    log(f"[1/5] reading {config.dataset} with adapter '{config.adapter.name}'")
    records, skips = collect(config)
    if not records:
        raise BuildError(f"no usable records in {config.dataset}: {len(skips)} skipped "
                         f"({_reasons(skips)}); check adapter.options")
    log(f"      {len(records)} records, {len(skips)} skipped ({_reasons(skips) or 'none'})")
    log("[2/5] finding duplicates and assigning splits")
    assignment, duplicate_report, digests = split_records(config, records)
    tasks = plan(config, records, assignment, data_root(records), digests)
    sidecars_dir = os.path.join(out_dir, shard_job.SIDECAR_DIR)
    if os.path.islink(sidecars_dir):
        raise safe_io.refuse_link(sidecars_dir)
    for folder in (out_dir, sidecars_dir):  # temporaries of killed writes (the lock is ours)
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            if name.startswith(".") and ".partial-" in name:
                _remove(os.path.join(folder, name))
    pending = [task for task in tasks if shard_job.read_finished(task, out_dir) is None]
    if pending:
        # A folder with a manifest must be a complete build; it becomes one again at step 4.
        _remove(os.path.join(out_dir, example_schema.MANIFEST_NAME))
    for name in _stale_shards(out_dir, {task.name for task in tasks}):
        log(f"      removing {name}: not part of this build's plan")
        _remove(os.path.join(out_dir, name))
        _remove(shard_job.sidecar_path(out_dir, name))
    log(f"[3/5] aligning: {len(tasks) - len(pending)} of {len(tasks)} shards already "
        f"finished, {sum(len(t.items) for t in pending)} images to align "
        f"in {min(config.workers, max(len(pending), 1))} worker(s)")
    align_start = time.monotonic()
    align_shards(pending, out_dir, config.workers, log)
    align_seconds = time.monotonic() - align_start
    sidecars = []
    for task in tasks:
        sidecar = shard_job.read_finished(task, out_dir)
        if sidecar is None:
            raise BuildError(f"shard {task.name} did not finish; rerun the build to resume")
        sidecars.append(sidecar)
    log("[4/5] writing skipped.tsv, contact sheet and manifest.json")
    aligned_now = sum(len(task.items) for task in pending)
    manifest = write_outputs(config, tasks, sidecars, skips, duplicate_report, out_dir,
                             time.monotonic() - start, align_seconds, aligned_now)
    log("[5/5] done")
    log(summary(manifest, out_dir))
    return manifest


def _beam_build(config: DataConfig, out_dir: str, log) -> dict[str, Any]:
    """The build as Apache Beam pipelines (data_prep.beam_pipeline)."""
    try:
        from data_prep import beam_pipeline
    except ImportError as error:
        if not (error.name or "").startswith("apache_beam"):
            raise
        raise BuildError("runner beam needs Apache Beam: pip install 'tfdldl[beam]' (or "
                         "pip install apache-beam), or build with --runner local") from None
    return beam_pipeline.build(config, out_dir, log)


def data_root(records: Sequence[Record]) -> str:
    """The deepest folder holding every record: TFRecord ``source`` paths are relative to it."""
    root = os.path.commonpath([os.path.abspath(record.path) for record in records])
    return os.path.dirname(root) if os.path.isfile(root) else root


def _stale_shards(out_dir: str, planned: set[str]) -> list[str]:
    """Shard files in ``out_dir`` (by their naming pattern) that the plan does not contain,
    and ``.partial`` leftovers of killed writes."""
    pattern = re.compile(r"^(%s)-\d{5}-of-\d{5}\.tfrecord(\.partial)?$"
                         % "|".join(example_schema.SPLITS))
    return sorted(name for name in os.listdir(out_dir)
                  if pattern.match(name) and name not in planned)


def _remove(path: str) -> None:
    if os.path.lexists(path):
        os.remove(path)


def _reasons(skips: Sequence[Skip]) -> str:
    counts = collections.Counter(skip.reason for skip in skips)
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))


def main(argv: Sequence[str]) -> None:
    """absl entry point: load the config, build, exit 2 with one line on a bad config."""
    from absl import flags

    del argv
    values = flags.FLAGS
    try:
        runner = [f"runner.name={values.runner}"] if values.runner else []
        config = load_data_config(values.config, list(values.set or ()) + runner)
        config.runner.beam_options += list(values.beam_option or ())
        check(config, values.config)
        build(config)
    except (ConfigError, BuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def _define_flags() -> None:
    from absl import flags

    cli.define_config_flags("configs/data/utkface.yaml")
    flags.DEFINE_enum("runner", None, ["local", "beam"], "Where the build runs (default: the "
                      "config's runner.name, else local); beam needs tfdldl[beam].")
    flags.DEFINE_multi_string("beam_option", [], "A Beam pipeline option KEY=VALUE, e.g. "
                              "runner=DataflowRunner (repeatable; adds to runner.beam_options).")


def run() -> None:
    """Console script ``tfdldl-build``."""
    cli.run_main(main, _define_flags)


if __name__ == "__main__":
    run()
