"""``data_prep.build`` as Apache Beam pipelines: ``--runner beam [--beam_option KEY=VALUE]``.

The same build as the local runner (data_prep.build), in two Beam pipelines around one
small global step:

1. **duplicates** (Beam): the adapter's records (listed on the launcher, as the local
   build does) are fingerprinted in parallel (SHA-256, dHash, thumbnail:
   data_prep.duplicates.read_thumbnails); byte-identical files meet under their SHA-256
   through ``GroupByKey``; near-identical ones meet under hash-band values
   (:class:`data_prep.hash_bands.BandPlan`, chosen from the hash statistics, combined
   exactly over the images, so that by the pigeonhole principle no pair within the
   matching radius can be missed): each image's plain hash under its band values with
   up to s bits flipped, its probes (values with up to u bits flipped, plain and
   mirrored) under theirs; every
   bucket is verified exactly, and pairs that need the thumbnail check get both
   thumbnails by two ``CoGroupByKey`` joins.
2. **splits** (launcher, metadata only): connected components of the pairs and the split
   assignment, by the local build's own code (data_prep.duplicates.group_report,
   data_prep.splits), then the shard plan (data_prep.build.plan). It needs every record's
   path, label and subject at once (about 200 bytes each) and it decides how many shards
   each split gets, which ``WriteToTFRecord`` must know when its pipeline is built.
3. **alignment** (Beam): the planned items are detected, aligned and encoded in batches
   by data_prep.shard_job.align_items (the local build's code), with one MTCNN per worker
   loaded in ``DoFn.setup()``; an item that raises is a skip (``alignment_error``), not a
   failed pipeline. Each split is written by ``beam.io.WriteToTFRecord`` into as many
   shards as the local plan has (same names, other members); faces and skips go to text
   files under ``.build/beam/`` from which the launcher writes ``skipped.tsv``, the
   contact sheet and ``manifest.json`` with the local build's
   data_prep.build_report.write_outputs.

The records per split, their labels and distributions, and the manifest's counts equal
the local build's; only which shard holds which record differs. A Beam build does not
resume: it rewrites every shard.

Runner: without a ``runner`` option the pipelines run on Beam's ``FnApiRunner`` on this
machine (``direct_num_workers = workers``, one process per worker), which needs no network.
Beam's default ``DirectRunner`` first tries the Prism runner, which downloads its binary
from the internet; this module never uses it unless asked to (``runner=DirectRunner``).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from typing import Any, Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from data_prep import build as build_module
from data_prep import band_join, build_report, duplicates, hash_bands, shard_job, splits
from data_prep.adapters.base import Record
from data_prep.config import DataConfig
from tfdldl import example_schema
from tfdldl.safe_io import file_sha256

LOCAL_RUNNER = "FnApiRunner"
WORK_DIR = os.path.join(shard_job.SIDECAR_DIR, "beam")
_SHARD_TEMPLATE = "-SSSSS-of-NNNNN"  # with file_name_suffix .tfrecord: example_schema.shard_name


def pipeline_options(config: DataConfig) -> PipelineOptions:
    """Beam options from ``config.runner.beam_options`` ("KEY=VALUE"; "true"/"false" for
    flags), defaulting to the offline FnApiRunner with ``config.workers`` processes."""
    values: dict[str, Any] = {}
    for option in config.runner.beam_options:
        key, value = option.split("=", 1)
        key = key.strip().lstrip("-")
        values[key] = {"true": True, "false": False}.get(value.strip().lower(), value.strip())
    if "runner" not in values:
        values["runner"] = LOCAL_RUNNER
        values.setdefault("direct_num_workers", config.workers)
        values.setdefault("direct_running_mode",
                          "multi_processing" if config.workers > 1 else "in_memory")
    return PipelineOptions.from_dictionary({k: v for k, v in values.items() if v is not False})


# -- stage 1: duplicates ------------------------------------------------------------------


def _fingerprint(element: tuple[int, str]) -> dict[str, Any]:
    """(index, path) -> the image's fingerprint as plain bytes (see duplicates.Fingerprints)."""
    index, path = element
    sha, small = duplicates.read_thumbnails(path)
    prints = duplicates.Fingerprints.from_thumbnails([(sha, small)])
    return {"index": index, "sha": sha, "readable": bool(prints.readable[0]),
            "bits": prints.bits[0].tobytes(), "mirror": prints.mirror_bits[0].tobytes(),
            "thumb": prints.thumbs[0].tobytes()}


class _StatsFn(beam.CombineFn):
    """Fingerprints -> data_prep.hash_bands.HashStats of their hashes (exact sums)."""

    def create_accumulator(self):
        return hash_bands.HashStats.empty()

    def add_input(self, stats, fingerprint):
        plain, mirror = (np.frombuffer(fingerprint[field], np.uint8)[None]
                         for field in ("bits", "mirror"))
        return stats.merge(hash_bands.HashStats.of(plain, mirror))

    def merge_accumulators(self, accumulators):
        total = hash_bands.HashStats.empty()
        for stats in accumulators:
            total = total.merge(stats)
        return total

    def extract_output(self, stats):
        return stats


def _band_entries(fingerprint: dict[str, Any], plan: hash_bands.BandPlan) -> Iterable:
    """((band, value), (role, index, plain bits, mirrored bits)) for the image's plain
    hash (role "index") and for every probe of its plain and mirrored hashes (roles
    "plain" and "mirror"), in every band."""
    entry = (fingerprint["index"], fingerprint["bits"], fingerprint["mirror"])
    values = {field: plan.values(np.frombuffer(fingerprint[field], np.uint8)[None])[0]
              for field in ("bits", "mirror")}
    for band in range(len(plan.bands)):
        for value in values["bits"][band] ^ plan.index_masks(band):
            yield (band, int(value)), ("index",) + entry
        for role, field in (("plain", "bits"), ("mirror", "mirror")):
            for probe in values[field][band] ^ plan.probe_masks(band):
                yield (band, int(probe)), (role,) + entry


def _verify_bucket(element, radius: int) -> Iterable[tuple[int, int, int]]:
    """(low, high, D) for the pairs of one (band, value) bucket within ``radius`` bits,
    as data_prep.band_join.close_pairs pairs them (plain probes with higher indexed
    images, mirrored probes with lower ones); D exact."""
    _, entries = element
    indexed = [entry[1:] for entry in entries if entry[0] == "index"]
    probes = [entry for entry in entries if entry[0] != "index"]
    if not indexed or not probes:
        return
    images = np.array([entry[0] for entry in indexed])
    plain = np.frombuffer(b"".join(entry[1] for entry in indexed), np.uint64).reshape(-1, 4)
    for role, query, query_plain, query_mirror in probes:
        other = images > query if role == "plain" else images < query
        words = np.frombuffer(query_plain if role == "plain" else query_mirror, np.uint64)
        for k in np.flatnonzero(other & band_join.within(
                plain, np.broadcast_to(words, plain.shape), radius)):
            mine = (query, query_plain, query_mirror)
            low, high = (mine, indexed[k]) if role == "plain" else (indexed[k], mine)
            low_plain, high_plain, high_mirror = (np.frombuffer(value, np.uint8) for value
                                                  in (low[1], high[1], high[2]))
            yield low[0], high[0], int(min(duplicates.hamming(low_plain, high_plain),
                                           duplicates.hamming(low_plain, high_mirror)))


def _first_thumbnails(element) -> Iterable:
    """Join 1 of 2: (low, {thumb, pairs}) -> (high, (low, thumbnail of low))."""
    low, joined = element
    for thumb in joined["thumb"]:
        for high in joined["pairs"]:
            yield high, (low, thumb)


def _correlated(element) -> Iterable[tuple[int, int]]:
    """Join 2 of 2: (high, {thumb, pairs}) -> (low, high) where the thumbnails correlate."""
    high, joined = element
    for thumb in joined["thumb"]:
        other = np.frombuffer(thumb, np.uint8).reshape(duplicates.THUMB, duplicates.THUMB)
        for low, low_thumb in joined["pairs"]:
            mine = np.frombuffer(low_thumb, np.uint8).reshape(duplicates.THUMB, duplicates.THUMB)
            if duplicates.thumbnail_correlation(mine, other) >= duplicates.CORRELATION:
                yield low, high


def _exact(element) -> Iterable[tuple[int, int]]:
    """(sha, indices) -> (first, other) for every further copy of the same bytes."""
    _, indices = element
    indices = sorted(indices)
    for other in indices[1:]:
        yield indices[0], other


def _plan(stats: hash_bands.HashStats, radius: int) -> hash_bands.BandPlan:
    return hash_bands.plan_bands(radius, stats.count, stats)


def duplicate_pairs(paths: Sequence[str], near_threshold: int, options: PipelineOptions,
                    work_dir: str) -> dict[str, Any]:
    """Run the duplicates pipeline over ``paths``; the band plan comes from the readable
    images' hash statistics (combined exactly), as data_prep.duplicates.plan_for does.

    Returns:
      {"exact": [(i, j)], "near": [(i, j)] (sorted), "undecodable": count,
       "sha256": {index: hex digest}, "plan": the BandPlan} with indices into ``paths``.
    """
    prefix = os.path.join(work_dir, "duplicates")
    near_threshold = int(near_threshold)
    radius = duplicates.wide_threshold(near_threshold)
    with beam.Pipeline(options=options) as pipeline:
        prints = (pipeline | "Paths" >> beam.Create(list(enumerate(paths)))
                  | "Fingerprint" >> beam.Map(_fingerprint))
        readable = prints | "Readable" >> beam.Filter(lambda f: f["readable"])
        exact = (prints | "WithBytes" >> beam.Filter(lambda f: f["sha"] != "")
                 | "BySha" >> beam.Map(lambda f: (f["sha"], f["index"]))
                 | "GroupSha" >> beam.GroupByKey() | "ExactPairs" >> beam.FlatMap(_exact)
                 | "ExactLines" >> beam.Map(lambda p: ["exact", p[0], p[1]]))
        plan = (readable | "Stats" >> beam.CombineGlobally(_StatsFn())
                | "Plan" >> beam.Map(_plan, radius))
        candidates = (readable
                      | "BandKeys" >> beam.FlatMap(_band_entries, beam.pvalue.AsSingleton(plan))
                      | "GroupBands" >> beam.GroupByKey()
                      | "Verify" >> beam.FlatMap(_verify_bucket, radius)
                      | "Once" >> beam.Distinct())
        close = (candidates | "Close" >> beam.Filter(lambda p: p[2] <= near_threshold)
                 | "CloseLines" >> beam.Map(lambda p: ["near", p[0], p[1]]))
        wide = (candidates
                | "Wide" >> beam.Filter(lambda p: duplicates.verdicts(p[2], near_threshold)[1])
                | "ByLow" >> beam.Map(lambda p: (p[0], p[1])))
        thumbs = readable | "Thumbs" >> beam.Map(lambda f: (f["index"], f["thumb"]))
        correlated = ({"thumb": thumbs, "pairs": wide} | "JoinLow" >> beam.CoGroupByKey()
                      | "ToHigh" >> beam.FlatMap(_first_thumbnails))
        correlated = ({"thumb": thumbs, "pairs": correlated} | "JoinHigh" >> beam.CoGroupByKey()
                      | "Correlated" >> beam.FlatMap(_correlated)
                      | "CorrelatedLines" >> beam.Map(lambda p: ["near", p[0], p[1]]))
        facts = (prints | "Facts" >> beam.Map(
            lambda f: ["print", f["index"], f["sha"], f["readable"]]))
        plan_line = plan | "PlanLine" >> beam.Map(
            lambda p: ["plan", [list(band) for band in p.bands], p.flips, p.fewer, p.expected])
        _ = ((exact, close, correlated, facts, plan_line) | "AllLines" >> beam.Flatten()
             | "Json" >> beam.Map(json.dumps) | "Write" >> beam.io.WriteToText(prefix))
    result: dict[str, Any] = {"exact": [], "near": [], "undecodable": 0, "sha256": {}}
    for line in _read_lines(prefix):
        kind, *values = json.loads(line)
        if kind == "print":
            index, sha, ok = values
            result["sha256"][index] = sha
            result["undecodable"] += 0 if ok else 1
        elif kind == "plan":
            bands, flips, fewer, expected = values
            result["plan"] = hash_bands.BandPlan(radius, tuple(map(tuple, bands)), flips,
                                                 fewer, expected)
        else:
            result[kind].append(tuple(values))
    result["near"] = sorted(set(result["near"]))
    return result


def _read_lines(prefix: str) -> list[str]:
    """The lines of every file WriteToText wrote under ``prefix``."""
    lines = []
    for path in sorted(glob.glob(prefix + "-*-of-*")):
        with open(path, encoding="utf-8") as handle:
            lines += [line for line in handle.read().splitlines() if line]
    return lines


def find_groups(records: Sequence[Record], near_threshold: int, options: PipelineOptions,
                work_dir: str) -> tuple[list[list[str]], dict[str, Any], dict[str, str]]:
    """Duplicate groups, report (as data_prep.duplicates.find_groups) and path -> SHA-256."""
    start = time.monotonic()
    paths = [record.path for record in records]
    found = duplicate_pairs(paths, near_threshold, options, work_dir)
    groups, report = duplicates.group_report(records, found["exact"], found["near"],
                                             found["undecodable"], near_threshold,
                                             found["plan"])
    report["seconds"] = round(time.monotonic() - start, 2)
    digests = {paths[index]: sha for index, sha in found["sha256"].items()}
    return groups, report, digests


# -- stage 3: alignment and writing -------------------------------------------------------


class AlignFn(beam.DoFn):
    """Batches of (split, planned Record) -> (split, serialized Example), plus tagged outputs
    "faces" ([split, source, label, confidence, method, coverage]) and "skips"."""

    def __init__(self, settings: shard_job.Settings):
        super().__init__()
        self.settings = settings
        self.aligner = None

    def setup(self):
        """Once per worker: quiet TensorFlow, one thread per op, one MTCNN."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        try:  # the processes are the parallelism; too late in a process already using TF
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
        self.aligner = self.settings.aligner()

    def process(self, batch):
        from data_prep.tfrecord_writer import serialize

        split_of = {item.source: split for split, item in batch}
        examples, faces, skips = shard_job.align_items([item for _, item in batch],
                                                       self.settings, self.aligner)
        for example, face in zip(examples, faces):
            yield split_of[face[0]], serialize(example)
            yield beam.pvalue.TaggedOutput("faces", [split_of[face[0]]] + face)
        for skip in skips:
            yield beam.pvalue.TaggedOutput("skips", skip)


def align_and_write(tasks: Sequence[shard_job.ShardTask], out_dir: str,
                    options: PipelineOptions, work_dir: str) -> tuple[list[list], list[list]]:
    """Run the alignment pipeline over the planned ``tasks``.

    Writes each split's shards (``task.name`` for every task) with WriteToTFRecord.
    Returns:
      (faces, skips): face rows [split, source, label, confidence, method, coverage]
      sorted by source, and skip rows [path, reason, detail] sorted by path.
    """
    items = [(task.split, item) for task in tasks for item in task.items]
    shard_counts = {task.split: task.count for task in tasks}
    with beam.Pipeline(options=options) as pipeline:
        results = (pipeline | "Items" >> beam.Create(items) | "Spread" >> beam.Reshuffle()
                   | "Batch" >> beam.BatchElements(min_batch_size=1,
                                                   max_batch_size=shard_job.CHUNK)
                   | "Align" >> beam.ParDo(AlignFn(tasks[0].settings)).with_outputs(
                       "faces", "skips", main="examples"))
        for split, count in shard_counts.items():
            _ = (results.examples
                 | f"Only{split}" >> beam.Filter(lambda kv, name=split: kv[0] == name)
                 | f"Bytes{split}" >> beam.Map(lambda kv: kv[1])
                 | f"Write{split}" >> beam.io.WriteToTFRecord(
                     os.path.join(out_dir, split), file_name_suffix=".tfrecord",
                     num_shards=count, shard_name_template=_SHARD_TEMPLATE))
        for name in ("faces", "skips"):
            _ = (results[name] | f"Json{name}" >> beam.Map(json.dumps)
                 | f"Write{name}" >> beam.io.WriteToText(os.path.join(work_dir, name)))
    faces = sorted((json.loads(line) for line in _read_lines(os.path.join(work_dir, "faces"))),
                   key=lambda face: face[1])
    skips = sorted((json.loads(line) for line in _read_lines(os.path.join(work_dir, "skips"))),
                   key=lambda skip: skip[0])
    return faces, skips


def _sidecars(tasks: Sequence[shard_job.ShardTask], out_dir: str, faces: list[list],
              skips: list[list]) -> list[dict[str, Any]]:
    """What write_outputs reads of each shard: its size, SHA-256 and record count, and
    (on each split's first shard, since Beam does not say which shard holds which record)
    the split's faces; every skip rides on the first shard."""
    from tfdldl.tfrecord_reader import iter_records

    sidecars = []
    for position, task in enumerate(tasks):
        path = os.path.join(out_dir, task.name)
        if not os.path.isfile(path):
            raise build_module.BuildError(f"the Beam pipeline did not write {path}; rerun")
        first = task.index == 0
        sidecars.append({
            "written": sum(1 for _ in iter_records(path, verify_data=False)),
            "shard_bytes": os.path.getsize(path), "shard_sha256": file_sha256(path),
            "faces": [face[1:] for face in faces if face[0] == task.split] if first else [],
            "skips": skips if position == 0 else []})
    return sidecars


def _clear_outputs(out_dir: str) -> None:
    """Remove a previous build's manifest, shards and their sidecars (a Beam build does not
    resume; the manifest goes first, so the folder never claims to be complete)."""
    build_module._remove(os.path.join(out_dir, example_schema.MANIFEST_NAME))
    for name in build_module._stale_shards(out_dir, set()):
        build_module._remove(os.path.join(out_dir, name))
        build_module._remove(shard_job.sidecar_path(out_dir, name))


def build(config: DataConfig, out_dir: str, log) -> dict[str, Any]:
    """The whole build on Beam (see the module docstring); returns the manifest dict."""
    start = time.monotonic()
    options = pipeline_options(config)
    work_dir = os.path.join(out_dir, WORK_DIR)
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    log(f"[1/5] reading {config.dataset} with adapter '{config.adapter.name}' "
        f"(Beam runner {options.get_all_options()['runner']})")
    records, adapter_skips = build_module.collect(config)
    if not records:
        raise build_module.BuildError(f"no usable records in {config.dataset}: "
                                      f"{len(adapter_skips)} skipped; check adapter.options")
    log(f"      {len(records)} records, {len(adapter_skips)} skipped")
    log("[2/5] finding duplicates (Beam) and assigning splits")
    groups, duplicate_report, digests = find_groups(
        records, config.duplicates.near_threshold, options, work_dir)
    assignment = splits.assign_splits(records, groups, config.splits, config.seed)
    splits.check_no_straddling(groups, {r.path: s for r, s in zip(records, assignment)})
    duplicate_report["straddling_groups"] = 0
    tasks = build_module.plan(config, records, assignment, build_module.data_root(records),
                              digests)
    _clear_outputs(out_dir)
    log(f"[3/5] aligning {len(records)} images into {len(tasks)} shards (Beam)")
    align_start = time.monotonic()
    faces, skips = align_and_write(tasks, out_dir, options, work_dir)
    align_seconds = time.monotonic() - align_start
    log("[4/5] writing skipped.tsv, contact sheet and manifest.json")
    manifest = build_report.write_outputs(
        config, tasks, _sidecars(tasks, out_dir, faces, skips), adapter_skips,
        duplicate_report, out_dir, time.monotonic() - start, align_seconds, len(records))
    log("[5/5] done")
    log(build_report.summary(manifest, out_dir))
    return manifest
