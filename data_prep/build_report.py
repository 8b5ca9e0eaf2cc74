"""What a finished data_prep.build leaves beside its shards, and the lines it prints.

:func:`write_outputs` writes ``skipped.tsv`` (every skipped file with its reason),
``contact_sheet.png`` (aligned training faces to look at) and, last, ``manifest.json``
(splits, counts, label histograms, duplicate report, alignment statistics, every shard's
size, SHA-256 and record count, the build's fingerprint); :func:`summary` turns a
manifest into the few lines printed at the end of a build. The local and the Beam
runner (data_prep.beam_pipeline) both finish through here.
"""

from __future__ import annotations

import collections
import hashlib
import os
from typing import Any, Sequence

import numpy as np

from data_prep import shard_job
from data_prep.adapters.base import Skip
from data_prep.config import DataConfig
from tfdldl import example_schema, safe_io
from tfdldl.config import to_dict
from tfdldl.manifest import write_manifest

SKIPPED_LIST = "skipped.tsv"
CONTACT_SHEET = "contact_sheet.png"
# A mean crop coverage below this is warned about (see summary()).
LOW_COVERAGE = 0.9


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
    _write_skipped(os.path.join(out_dir, SKIPPED_LIST), skips)
    splits, histogram = _splits_and_histogram(tasks, sidecars)
    faces = [face for sidecar in sidecars for face in sidecar["faces"]]
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
        "alignment": _alignment_report(config, faces, skips),
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


def _write_skipped(path: str, skips: list[list]) -> None:
    """``skipped.tsv``: a header, then one ``path, reason, detail`` row per skip (the
    detail's whitespace folded to single spaces)."""
    with safe_io.atomic_file(path) as handle:
        handle.write("path\treason\tdetail\n")
        for source, reason, detail in skips:
            handle.write(f"{source}\t{reason}\t{' '.join(str(detail).split())}\n")


def _splits_and_histogram(tasks: list[shard_job.ShardTask], sidecars: list[dict]
                          ) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Per split: {"count", "shards"}, and the label histogram {label text: count}."""
    splits, histogram = {}, {}
    for split in example_schema.SPLITS:
        mine = [(task, sidecar) for task, sidecar in zip(tasks, sidecars) if task.split == split]
        labels = [face[1] for _, sidecar in mine for face in sidecar["faces"]]
        splits[split] = {"count": len(labels), "shards": [task.name for task, _ in mine]}
        counts = collections.Counter(f"{label:g}" for label in labels)
        histogram[split] = dict(sorted(counts.items(), key=lambda kv: float(kv[0])))
    return splits, histogram


def _alignment_report(config: DataConfig, faces: list[list], skips: list[list]
                      ) -> dict[str, Any]:
    """The manifest's "alignment": detections, fallbacks, no-face skips, their rates, the
    settings and framing, and the crop coverage of the written faces."""
    detected = [face[2] for face in faces if face[3] == shard_job.ALIGNED]
    no_face = sum(1 for skip in skips if skip[1] == "no_face")
    attempted = len(faces) + no_face
    return {
        "detector": "mtcnn",
        "attempted": attempted,
        "detected": len(detected),
        "center_cropped": len(faces) - len(detected),
        "no_face": no_face,
        "detection_rate": len(detected) / attempted if attempted else None,
        "mean_confidence": float(np.mean(detected)) if detected else None,
        "settings": to_dict(config.alignment),
        "framing": config.alignment.framing().to_dict(),
        "coverage": coverage_summary([face[4] for face in faces if len(face) > 4]),
    }


def build_fingerprint(tasks: Sequence[shard_job.ShardTask]) -> str:
    """SHA-256 over the fingerprints of every planned shard: what this build is."""
    return hashlib.sha256("".join(task.fingerprint() for task in tasks).encode()).hexdigest()


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
