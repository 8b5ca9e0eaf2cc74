"""``manifest.json``: what a TFRecord folder holds, read by training, evaluation and the TF-free reader.

data_prep writes it last (after every shard is complete), so a folder with a manifest is
a complete build. Required keys::

    {
      "schema_version": 1,
      "dataset": "utkface",
      "task": "age",                                     # or "attractiveness"
      "label_space": {"name": "age", "minimum": 0, "maximum": 100, "step": 1, "num_classes": 101},
      "sigma": {"policy": "constant", "value": 2.0},     # or "per_sample"
      "image_size": 224,
      "splits": {"train": {"count": 16000, "shards": ["train-00000-of-00016.tfrecord", ...]},
                 "val": {...}, "test": {...}},
      ... anything else data_prep reports (skips, duplicates, alignment, histogram, config)
    }

``task`` says what the label is (:data:`TASKS`); training refuses an experiment of another
task, and evaluation reads it (:attr:`Manifest.task`). Manifests written before the key
existed stay readable: their task is :func:`legacy_task` of the label space's name ("age"
unless the name is a task), which is what tfdldl inferred before.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from tfdldl import example_schema
from tfdldl.face_align import Framing
from tfdldl.jsonio import write_json
from tfdldl.label_space import LabelSpace


# What a label can be: "age" (years) or "attractiveness" (a rating); tfdldl.metrics picks
# each task's measures.
TASKS = ("age", "attractiveness")


class ManifestError(ValueError):
    """A TFRecord folder that is missing, incomplete or inconsistent."""


def legacy_task(label_space: LabelSpace) -> str:
    """The task of a manifest without a "task" key: its label space's name when that names a
    task (the rule tfdldl applied before tasks were recorded), else "age"."""
    return label_space.name if label_space.name in TASKS else "age"


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The parts of a manifest that consumers rely on.

    Attributes:
      root: the TFRecord folder.
      label_space: the grid the stored distributions were computed on.
      image_size: side of the stored aligned faces, pixels.
      splits: split name -> list of shard paths (absolute).
      counts: split name -> number of records.
      sigma: the σ policy dict as written.
      raw: the whole manifest dict.
      task: what the label is, one of :data:`TASKS` (the manifest's "task"; for older
        manifests :func:`legacy_task`).
    """

    root: str
    label_space: LabelSpace
    image_size: int
    splits: dict[str, list[str]]
    counts: dict[str, int]
    sigma: dict[str, Any]
    raw: dict[str, Any]
    task: str = "age"

    def shards(self, split: str) -> list[str]:
        """Shard paths of ``split``; raises ManifestError naming the available splits."""
        if split not in self.splits:
            raise ManifestError(
                f"{self.root} has no split '{split}' (it has: {', '.join(self.splits) or 'none'})"
            )
        if self.counts.get(split, 0) == 0:
            raise ManifestError(
                f"split '{split}' in {self.root} is empty; rebuild it with data_prep.build "
                "or choose another split"
            )
        return self.splits[split]

    def face_alignment(self) -> dict[str, Any]:
        """How the stored faces were made: ``{"image_size": S, "framing": {...},
        "alignment": {...}}``.

        Exported with a model so that ``tfdldl.predict`` aligns photos at the size and
        with the framing the model was trained from (the model then resizes to its input
        size, as training did).
        """
        alignment = self.raw.get("config", {}).get("alignment", {})
        return {"image_size": self.image_size, "framing": self.framing.to_dict(),
                "alignment": dict(alignment)}

    @property
    def framing(self) -> Framing:
        """The framing of the stored faces; data built before framings were recorded
        used :data:`tfdldl.face_align.LEGACY_FRAMING`."""
        return Framing.from_dict(self.raw.get("alignment", {}).get("framing"))

    def require_framing(self, expected: Framing | None, what: str = "the model") -> None:
        """Raise ManifestError unless the data's faces were framed as ``expected``
        (None: the model records no framing, nothing to check)."""
        if expected is not None and self.framing != expected:
            raise ManifestError(
                f"{self.root} holds faces aligned with framing {self.framing.describe()} but "
                f"{what} was trained with framing {expected.describe()}; its answers on "
                "these faces would be off. Rebuild the data with the model's framing "
                "(alignment.template_scale / template_offset_y / border in the data config) "
                "or evaluate a model trained on this data")

    def group_names(self) -> tuple[str, list[str]]:
        """(what the records' group codes are, name of each code), e.g. ("race", ["White", ...]).

        ("", []) when the data defines no groups (the manifest's optional "group" section).
        """
        group = self.raw.get("group") or {}
        return str(group.get("name", "")), [str(label) for label in group.get("labels", [])]

    def require_task(self, task: str, what: str = "the experiment") -> None:
        """Raise ManifestError unless the data's labels are of ``task``."""
        if task != self.task:
            raise ManifestError(
                f"{self.root} holds {self.task} labels but {what} is for the {task} task; set "
                f"task: {self.task} in the experiment config, or train on {task} data")

    def require_label_space(self, expected: LabelSpace, what: str = "the model") -> None:
        """Raise ManifestError unless the data's grid equals ``expected``'s."""
        if not self.label_space.same_grid(expected):
            raise ManifestError(
                f"{self.root} was built with label space {self.label_space.describe()} but "
                f"{what} uses {expected.describe()}; rebuild the data with the model's label "
                "space or configure the model with the data's"
            )


def read_manifest(root: str | os.PathLike) -> Manifest:
    """Load and validate ``root/manifest.json``; every shard it names must exist.

    Raises:
      ManifestError: no folder, no manifest (an unfinished build), bad JSON, a newer
        schema, or a listed shard missing.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise ManifestError(f"TFRecord folder {root} does not exist; build it with data_prep.build")
    path = os.path.join(root, example_schema.MANIFEST_NAME)
    if not os.path.exists(path):
        raise ManifestError(
            f"{root} has no {example_schema.MANIFEST_NAME}: the build is missing or did not "
            "finish; rerun data_prep.build (it resumes)"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
        version = int(raw["schema_version"])
        label_space = LabelSpace.from_dict(raw["label_space"])
        image_size = int(raw["image_size"])
        split_info = raw["splits"]
        task = str(raw.get("task") or legacy_task(label_space))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ManifestError(f"{path} is not a valid manifest: {error!r}") from None
    if task not in TASKS:
        raise ManifestError(f"{path}: task {task!r} is not one of {', '.join(TASKS)}; "
                            "rebuild the data with a known task")
    if version > example_schema.SCHEMA_VERSION:
        raise ManifestError(
            f"{path} has schema_version {version}, newer than this tfdldl understands "
            f"({example_schema.SCHEMA_VERSION}); upgrade tfdldl"
        )
    splits, counts = {}, {}
    for name, info in split_info.items():
        shards = [os.path.join(root, shard) for shard in info.get("shards", [])]
        missing = [shard for shard in shards if not os.path.exists(shard)]
        if missing:
            raise ManifestError(
                f"{root}: shard {os.path.basename(missing[0])} of split '{name}' is missing; "
                "rerun data_prep.build to rebuild it"
            )
        splits[name] = shards
        counts[name] = int(info.get("count", 0))
    return Manifest(
        root=root,
        label_space=label_space,
        image_size=image_size,
        splits=splits,
        counts=counts,
        sigma=dict(raw.get("sigma", {})),
        raw=raw,
        task=task,
    )


def write_manifest(root: str | os.PathLike, manifest: dict[str, Any]) -> str:
    """Write ``manifest`` as ``root/manifest.json`` atomically; returns the path."""
    return write_json(os.path.join(os.fspath(root), example_schema.MANIFEST_NAME), manifest)
