"""The typed config of one dataset build (``configs/data/<set>.yaml``).

Loaded with :func:`tfdldl.config.load_config` into :class:`DataConfig`; unknown keys and
wrong types are :class:`tfdldl.config.ConfigError` naming the key and the file. Relative
paths in a config are relative to the current directory (the project root), like every
command in the README.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal, Optional, Sequence

from data_prep.duplicates import DEFAULT_NEAR_THRESHOLD
from data_prep.splits import SplitSpec
from tfdldl.config import ConfigError, load_config
from tfdldl.face_align import DEFAULT_FRAMING, Framing
from tfdldl.label_space import LabelSpace
from tfdldl.manifest import TASKS

# Upper bounds of values that would otherwise exhaust memory or mean nothing.
MAX_OUTPUT_SIZE = 1024  # stored face side, pixels (224 is the paper's)
MAX_DETECTION_SIDE = 8192  # photo side MTCNN runs on, pixels
MAX_SIGMA_STEPS = 1000  # σ in label steps


@dataclasses.dataclass
class AdapterConfig:
    """Which dataset reader to use (data_prep.adapters.make_adapter) and its options.

    Attributes:
      name: registry name, e.g. "utkface", "fgnet", "benchmark_json", "chalearn_csv",
        "scut_fbp5500", "generic_csv".
      options: keyword arguments of that adapter (its folder, label file, ...).
    """

    name: str = "generic_csv"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LabelSpaceConfig:
    """The label grid (see tfdldl.label_space.LabelSpace): min, max, step in label units."""

    name: str = "age"
    minimum: float = 0.0
    maximum: float = 100.0
    step: float = 1.0

    def build(self) -> LabelSpace:
        """The :class:`LabelSpace` this section describes."""
        return LabelSpace(self.minimum, self.maximum, self.step, self.name)


@dataclasses.dataclass
class SigmaConfig:
    """σ of each record's Gaussian label distribution, in label units.

    Attributes:
      policy: "constant" gives every record ``value``; "per_sample" takes the adapter's
        σ (ChaLearn's annotator std) and falls back to ``value`` where a record has none.
      value: the constant σ, or the per-sample fallback.
    """

    policy: Literal["constant", "per_sample"] = "constant"
    value: float = 2.0


@dataclasses.dataclass
class AlignmentConfig:
    """Face detection and alignment (tfdldl.face_align.FaceAligner).

    Attributes:
      output_size: side of the stored aligned faces, pixels.
      min_face_size: smallest face MTCNN looks for, pixels. Pre-cropped sets, whose faces
        fill the image, can raise it (60 on UTKFace's 200 px crops) for a much faster
        detector pyramid.
      thresholds: MTCNN's PNet, RNet, ONet face-probability thresholds.
      scale_factor: MTCNN's image-pyramid ratio.
      max_side: longer sides above this are downscaled before detection, pixels.
      precropped: the images are already face crops (UTKFace, the synthetic demo set);
        required for ``on_no_face: center_crop``.
      on_no_face: "skip" counts an image without a detected face as skipped (no_face);
        "center_crop" keeps its central square instead and counts it as a fallback.
      template_scale, template_offset_y, border: the framing of the aligned crops
        (tfdldl.face_align.Framing): template size relative to ArcFace's, its vertical
        shift as a fraction of the side, and the fill of crop pixels outside the photo
        ("reflect", "replicate", "black"). Recorded in the manifest and in every model
        trained on the data; predict then aligns photos the same way.
    """

    output_size: int = 224
    min_face_size: int = 20
    thresholds: list[float] = dataclasses.field(default_factory=lambda: [0.6, 0.7, 0.7])
    scale_factor: float = 0.709
    max_side: int = 1024
    precropped: bool = False
    on_no_face: Literal["skip", "center_crop"] = "skip"
    template_scale: float = DEFAULT_FRAMING.scale
    template_offset_y: float = DEFAULT_FRAMING.offset_y
    border: Literal["reflect", "replicate", "black"] = DEFAULT_FRAMING.border

    def framing(self) -> Framing:
        """The :class:`Framing` these settings describe (raises ValueError when invalid)."""
        return Framing(self.template_scale, self.template_offset_y, self.border)


@dataclasses.dataclass
class GroupConfig:
    """What the records' ``group`` codes mean, for evaluation slices (tfdldl.evaluate).

    Attributes:
      name: what the codes are, e.g. "race" ("" when the dataset has no groups).
      labels: the name of code i at position i, e.g. UTKFace's race codes 0..4.
    """

    name: str = ""
    labels: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DuplicatesConfig:
    """Duplicate detection before splitting (data_prep.duplicates).

    Attributes:
      near_threshold: the largest Hamming distance (bits of a 256-bit dHash) at which two
        images count as near-identical; 0 finds byte- and pixel-identical copies only.
    """

    near_threshold: int = DEFAULT_NEAR_THRESHOLD


@dataclasses.dataclass
class OutputConfig:
    """Where and how the TFRecords are written.

    Attributes:
      dir: output folder (shards, manifest.json, skipped.tsv, contact_sheet.png).
      records_per_shard: a split of N records gets ceil(N / this) shards; each shard is
        one unit of parallel work and of resuming.
      jpeg_quality: JPEG quality of the stored aligned faces, 1..100.
      contact_sheet_faces: aligned faces shown in contact_sheet.png (0: none).
    """

    dir: str = "data/out"
    records_per_shard: int = 1000
    jpeg_quality: int = 95
    contact_sheet_faces: int = 64


@dataclasses.dataclass
class RunnerConfig:
    """Where the build runs.

    Attributes:
      name: "local" (worker processes on this machine; resumes finished shards) or "beam"
        (the same build as an Apache Beam pipeline, data_prep.beam_pipeline; needs
        ``pip install 'tfdldl[beam]'``).
      beam_options: Beam pipeline options as "KEY=VALUE" strings, e.g.
        "runner=DataflowRunner", "project=my-project"; ``--beam_option`` on the command
        line adds to them. Without a ``runner`` option the pipeline runs on Beam's
        FnApiRunner on this machine with ``workers`` processes, offline.
    """

    name: Literal["local", "beam"] = "local"
    beam_options: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DataConfig:
    """One dataset build: what to read, how to label, align, split and write it.

    Attributes:
      dataset: a name for the manifest and logs, e.g. "utkface".
      task: what the label is, "age" or "attractiveness" (tfdldl.manifest.TASKS); written
        to the manifest, where training and evaluation read it.
      adapter: the dataset reader.
      label_space: the label grid the distributions are computed on.
      sigma: the σ policy.
      alignment: face detection and alignment.
      splits: how records are split (data_prep.splits.SplitSpec).
      duplicates: duplicate detection settings.
      group: the names of the adapter's group codes (UTKFace: race).
      output: where and how to write.
      runner: local worker processes or an Apache Beam pipeline.
      workers: parallel alignment processes (each loads its own MTCNN).
      seed: makes splits and shard membership reproducible.
      limit: build only a random (seeded) subset of N of the usable records (0: all), for
        quick trials and benchmarks; skips are still counted over the whole dataset.
    """

    dataset: str = "dataset"
    task: Literal["age", "attractiveness"] = "age"
    adapter: AdapterConfig = dataclasses.field(default_factory=AdapterConfig)
    label_space: LabelSpaceConfig = dataclasses.field(default_factory=LabelSpaceConfig)
    sigma: SigmaConfig = dataclasses.field(default_factory=SigmaConfig)
    alignment: AlignmentConfig = dataclasses.field(default_factory=AlignmentConfig)
    splits: SplitSpec = dataclasses.field(default_factory=SplitSpec)
    duplicates: DuplicatesConfig = dataclasses.field(default_factory=DuplicatesConfig)
    group: GroupConfig = dataclasses.field(default_factory=GroupConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    runner: RunnerConfig = dataclasses.field(default_factory=RunnerConfig)
    workers: int = 2
    seed: int = 0
    limit: int = 0


def load_data_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> DataConfig:
    """Load and check a data config.

    Raises:
      ConfigError: unknown keys, wrong types, or values that cannot work together.
    """
    config = load_config(path, DataConfig, overrides)
    check(config, os.fspath(path))
    return config


def check(config: DataConfig, source: str = "<config>") -> None:
    """Raise ConfigError for values the schema's types cannot rule out."""
    problems: list[str] = []
    try:
        config.label_space.build()
    except ValueError as error:
        problems.append(f"label_space: {error}")
    alignment, output = config.alignment, config.output
    if alignment.on_no_face == "center_crop" and not alignment.precropped:
        problems.append("alignment.on_no_face: center_crop needs alignment.precropped: true "
                        "(the centre of a full photo is not a face)")
    if len(alignment.thresholds) != 3:
        problems.append("alignment.thresholds needs 3 values (PNet, RNet, ONet)")
    if not 16 <= alignment.output_size <= MAX_OUTPUT_SIZE:
        problems.append(f"alignment.output_size must lie in 16..{MAX_OUTPUT_SIZE} pixels")
    if not alignment.output_size <= alignment.max_side <= MAX_DETECTION_SIDE:
        problems.append(f"alignment.max_side must lie in alignment.output_size.."
                        f"{MAX_DETECTION_SIDE} pixels (photos are downscaled to it for "
                        "detection; a smaller side finds no face)")
    if not 12 <= alignment.min_face_size <= alignment.max_side:
        problems.append("alignment.min_face_size must lie in 12..alignment.max_side pixels "
                        "(MTCNN's smallest window is 12)")
    if not all(0.0 < value < 1.0 for value in alignment.thresholds):
        problems.append("alignment.thresholds are probabilities in (0, 1)")
    try:
        alignment.framing()
    except ValueError as error:
        problems.append(f"alignment: {error}")
    if not 0 < alignment.scale_factor < 1:
        problems.append("alignment.scale_factor must lie in (0, 1)")
    if not 0 <= config.sigma.value <= MAX_SIGMA_STEPS * config.label_space.step:
        problems.append(f"sigma.value must lie in 0..{MAX_SIGMA_STEPS} label steps "
                        "(a wider Gaussian is flat over any label grid)")
    if output.records_per_shard < 1:
        problems.append("output.records_per_shard must be >= 1")
    if not 1 <= output.jpeg_quality <= 100:
        problems.append("output.jpeg_quality must lie in 1..100")
    if config.workers < 1:
        problems.append("workers must be >= 1")
    if config.label_space.name in TASKS and config.label_space.name != config.task:
        problems.append(f"label_space.name {config.label_space.name!r} names another task "
                        f"than task {config.task!r}; set task: {config.label_space.name}")
    if config.group.labels and not config.group.name:
        problems.append("group.labels needs group.name (what the codes are, e.g. race)")
    bad_options = [option for option in config.runner.beam_options
                   if "=" not in option or not option.split("=", 1)[0].strip()]
    if bad_options:
        problems.append(f"runner.beam_options {bad_options} are not KEY=VALUE (e.g. "
                        "runner=DataflowRunner)")
    if config.limit < 0:
        problems.append("limit must be >= 0 (0 builds everything)")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


def sigma_of(config: SigmaConfig, per_sample: Optional[float]) -> float:
    """The σ a record gets under ``config``, given the adapter's own σ (or None)."""
    if config.policy == "per_sample" and per_sample is not None:
        return float(per_sample)
    return float(config.value)
