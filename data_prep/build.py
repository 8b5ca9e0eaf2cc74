"""``python -m data_prep.build --config configs/data/<set>.yaml [--set key=value ...]``.

Raw photos and labels in, aligned, leak-free, sharded TFRecords out:

1. the dataset adapter lists records, and skips (malformed names, missing files...);
2. labels outside the label space are skipped (``label_out_of_range``);
3. duplicate groups are found and splits assigned by group (and subject), so no
   duplicate or person straddles two splits;
4. each split is shuffled (seeded) and cut into shards; every shard is planned before any
   alignment, so a shard is one unit of parallel work and of resuming;
5. worker processes (each with its own MTCNN; data_prep.shard_workers) read, align,
   encode and write the shards that are not finished yet (atomic ``.partial`` + rename),
   with a progress line;
6. ``skipped.tsv``, ``contact_sheet.png`` and, last, ``manifest.json`` are written and
   a summary printed (data_prep.build_report).

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
import math
import os
import re
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np

from data_prep import shard_job
from data_prep.adapters.base import Record, Skip
from data_prep.build_report import summary, write_outputs
from data_prep.config import DataConfig, check, load_data_config, sigma_of
from data_prep.shard_workers import align_shards
from tfdldl import cli, example_schema, safe_io
from tfdldl.config import ConfigError


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


# -- the job ------------------------------------------------------------------------------


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
