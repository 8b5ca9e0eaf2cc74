"""The typed experiment config read by ``python -m tfdldl.train --config configs/<exp>.yaml``.

One YAML file per experiment; every key below has the paper's default, so a file only
states what differs. Loaded with :func:`tfdldl.config.load_config`: a typo or a wrong
type is a :class:`tfdldl.config.ConfigError` naming the key and the file.

Sizes are pixels, learning rates are per step, epochs count passes over the train split.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Literal, Mapping, Optional, Sequence

from tfdldl import head_kinds
from tfdldl.config import ALIASES, ConfigError, Sources, load_config

# The older single-head form's section of a categorical head on the records' gender codes:
# its head's name and the record feature it predicts (resolve_heads).
GENDER_SECTION = "gender"

@dataclasses.dataclass
class DataConfig:
    """Where the TFRecords are (a folder written by data_prep.build, with manifest.json).

    The label space is not configured here: it is read from the manifest, and the model is
    built on it. ``in_memory``: decode every training face once, at the model's input
    size, and hold them in memory as uint8 (N x S x S x 3 bytes: 16k faces at 80 px are
    0.3 GB); each step then only gathers and augments a batch, with no JPEG decoding. The
    stream stays a pure function of (seed, epoch, step), so resuming is step-exact.
    """

    tfrecords: str = "data/utkface"
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    shuffle_buffer: int = 4096
    in_memory: bool = False


@dataclasses.dataclass
class ModelConfig:
    """The network (tfdldl.models.build_model) and optional starting weights."""

    arch: Literal["thin", "tiny"] = "thin"
    input_size: int = 224
    pooling: Literal["hybrid", "gap"] = "hybrid"
    width: Optional[float] = None
    # A .keras or .weights.h5 file to start from (fine-tuning); None trains from scratch.
    initial_weights: Optional[str] = None
    # Feed a categorical head's predicted probabilities into the label head through a small
    # learned embedding (tfdldl.models.build_model's into_label): the head's name; "" none.
    into_label: str = ""
    # The older spelling of into_label: gender (the head of the gender section).
    gender_into_age: bool = False
    # CBAM channel + spatial attention on the last conv block, before pooling
    # (tfdldl.layers.ConvBlockAttention).
    attention: bool = False


@dataclasses.dataclass
class GenderConfig:
    """The older form of a categorical head on the records' gender codes, trained beside the
    age head (:func:`resolve_heads` maps it onto a ``heads:`` entry named after the
    section).

    names: the class names in the records' code order (UTKFace: [male, female]); empty
      (the default) = no such head. The model keeps them and the SavedModel lists them
      (export_info.json's class_names), so the columns of the head's ``<name>_probability``
      are named by the data's config, not by code.
    weight: the fixed loss weight of its cross-entropy (masked where the record's code is
      unknown); the age losses keep theirs (1 and loss.lam).
    """

    names: list[str] = dataclasses.field(default_factory=list)
    weight: float = 1.0


@dataclasses.dataclass
class LossConfig:
    """The training loss (tfdldl.heads.build_loss); the head follows from the name.

    name: one of tfdldl.head_kinds.LOSS_NAMES (dldl_v2, dldl, er, dex, mr_l1, mr_l2, ranking).
    """

    name: str = "dldl_v2"
    lam: float = 1.0
    kl_normalization: Literal["sum", "mean"] = "sum"


@dataclasses.dataclass
class HeadConfig:
    """One entry of the ``heads:`` list: one model output group (tfdldl.heads), its loss and
    weight, in the spirit of the Facial Age Estimation Benchmark's configs::

        heads:
          - {name: age, kind: distribution, attribute: age, loss: dldl_v2, weight: 1.0}
          - {name: gender, kind: categorical, attribute: gender,
             loss: masked_cross_entropy, weight: 1.0, names: [male, female]}
          - {name: race, kind: categorical, attribute: group,
             names: [white, black, asian, indian, others]}

    name: the head's own name, unique: a categorical head's output is
      ``<name>_probability`` and its prediction-row fields ``<name>``,
      ``<name>_confidence`` (logs: loss_weight_<name> under learned weighting).
    kind: "distribution", "regression" or "ranking" (a label head, exactly one: it
      predicts the record's label) or "categorical" (any number; tfdldl.head_kinds.KINDS_ALL).
    attribute: what it predicts: the experiment's ``task`` for a label head; for a
      categorical head the integer record feature whose codes it predicts
      (tfdldl.example_schema: "gender" or "group"); "" = the task / the head's name.
    loss: one of the kind's losses (distribution: dldl_v2, dldl, er, dex; regression: mr_l1,
      mr_l2; ranking: ranking; categorical: masked_cross_entropy); "" = the kind's first.
    weight: the fixed weight of the head's whole loss (finite, >= 0); leave it at 1 with
      ``loss_weighting: uncertainty`` (the weights are learned).
    lam, kl_normalization: dldl_v2's λ and the KL convention (label heads; tfdldl.losses).
    names: the class names in record-code order (categorical: at least two, e.g. [male,
      female]).
    """

    name: str = ""
    kind: str = ""
    attribute: str = ""
    loss: str = ""
    weight: float = 1.0
    lam: float = 1.0
    kl_normalization: Literal["sum", "mean"] = "sum"
    names: list[str] = dataclasses.field(
        default_factory=list, metadata={ALIASES: ("classes", "class_names", "labels")})


@dataclasses.dataclass
class OptimizerConfig:
    """Optimizer and learning-rate schedule (paper: Adam 1e-3, x0.1 every 30 epochs).

    schedule "step": lr x decay_factor every decay_every_epochs; "cosine": linear warm-up
    over warmup_epochs then cosine decay to 0 at the last epoch; "constant".
    """

    name: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: Literal["step", "cosine", "constant"] = "step"
    decay_every_epochs: int = 30
    decay_factor: float = 0.1
    warmup_epochs: float = 0.0


@dataclasses.dataclass
class TrainConfig:
    """The training loop.

    batch_size is the GLOBAL batch (split across replicas; must be divisible by their
    number). steps_per_epoch None means one pass over the train split (remainder dropped).
    backup_every_steps: the resumable backup is written every this many steps and at the
    end of every epoch, so a kill loses at most that many steps.
    jit_compile: compile the step with XLA. XLA's CPU code does not use TensorFlow's
    oneDNN kernels (which tfdldl.train asks for, tfdldl.cli.use_onednn): on this
    project's AVX2 CPU the TinyAgeNet step is faster without it (benchmarks/
    bench_train_cpu.py: 70.8 images per CPU-second with oneDNN, 47.8 with XLA).
    verbose: Keras' progress display: 0 none, 1 a progress bar redrawn every step, 2 one
    line per epoch. Left out (null), it is 1 when stdout is a terminal and 2 when it is not
    (a log file, nohup, CI), where a redrawn bar would flood the log with every step.
    """

    epochs: int = 60
    batch_size: int = 128
    steps_per_epoch: Optional[int] = None
    backup_every_steps: int = 200
    jit_compile: bool = False
    verbose: Optional[int] = None

    def __post_init__(self) -> None:
        if self.verbose is None:
            self.verbose = 1 if _stdout_is_terminal() else 2


@dataclasses.dataclass
class AugmentConfig:
    """The paper's training augmentation; each part can be switched off.

    rescale: the face is resized to side s = U(rescale_min, rescale_max) x input size (the
    paper's 112..224 at 224 px) and a random input-size window is cropped around it.
    fill_mode: what fills the window where it leaves the image: "reflect" (the image
    mirrored at its edge, like data_prep's border) or "constant" (black).

    Real-photo degradations (off by default; users' photos are scanned prints, blurred,
    small, over-compressed, noisy, tinted and framed a little differently from UTKFace's
    clean chips):
      translate: framing jitter, a random shift of up to this fraction of the side in x
        and y (on top of the crop offset), as imprecise landmarks would move the face.
      blur_probability: share of images blended with a Gaussian-blurred copy (σ = 1.2 px,
        blend weight U(0, 1)): out-of-focus and soft photos.
      downscale_probability, downscale_min: share of images shrunk to a side of
        U(downscale_min, 1) x S and scaled back up (one factor per batch): small faces.
      jpeg_probability, jpeg_quality_min, jpeg_quality_max: share of images re-encoded as
        JPEG with quality U(min, max): over-compressed photos.
      noise_std: Gaussian pixel noise with a per-image std U(0, noise_std), 0..255 units.
      color_cast: per-channel gains U(1 - c, 1 + c) per image: tinted and faded prints.
    """

    enabled: bool = True
    flip: bool = True
    grayscale_probability: float = 0.5
    rescale: bool = True
    rescale_min: float = 0.5
    rescale_max: float = 1.0
    rotation_degrees: float = 15.0
    color_jitter: float = 0.4
    fill_mode: Literal["reflect", "constant"] = "reflect"
    translate: float = 0.0
    blur_probability: float = 0.0
    downscale_probability: float = 0.0
    downscale_min: float = 0.35
    jpeg_probability: float = 0.0
    jpeg_quality_min: int = 30
    jpeg_quality_max: int = 95
    noise_std: float = 0.0
    color_cast: float = 0.0


@dataclasses.dataclass
class ExportConfig:
    """Where the SavedModel goes: ``<saved_models_dir>/<name>/<version>/``.

    name "" means the experiment's name.
    """

    enabled: bool = True
    name: str = ""
    version: int = 1
    saved_models_dir: str = "saved_models"


@dataclasses.dataclass
class DistributionConfig:
    """tf.distribute strategy.

    "auto": MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else
    MirroredStrategy over all GPUs when there are several, else the default strategy.
    "mirrored": MirroredStrategy over the GPUs, or over all logical CPU devices when
    there is no GPU. sync_batch_norm: BatchNorm statistics over the global batch when
    there are several replicas (so the result does not depend on the replica count).
    """

    strategy: Literal["auto", "mirrored", "multi_worker", "default"] = "auto"
    sync_batch_norm: bool = True


@dataclasses.dataclass
class Experiment:
    """A whole training run. ``output_dir`` "" means ``runs/<name>``.

    task: what the label is, which picks the training metrics (tfdldl.metrics.build_metrics):
    "age" (MAE, CS@5) or "attractiveness" (MAE, RMSE, Pearson correlation); it must be the
    data's (the manifest's ``task``).

    The heads: either a ``heads:`` list (:class:`HeadConfig`), or the older single-head form
    (``loss:`` plus an optional ``gender:`` section), which :func:`resolve_heads` maps onto
    the same list; not both. loss_weighting: "fixed" (each head's ``weight``) or
    "uncertainty" (learned, tfdldl.loss_weighting: Kendall, Gal & Cipolla 2018).
    """

    name: str = "experiment"
    task: Literal["age", "attractiveness"] = "age"
    seed: int = 0
    deterministic: bool = False
    output_dir: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    gender: GenderConfig = dataclasses.field(default_factory=GenderConfig)
    heads: list[HeadConfig] = dataclasses.field(default_factory=list)
    loss_weighting: Literal["fixed", "uncertainty"] = "fixed"
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    distribution: DistributionConfig = dataclasses.field(default_factory=DistributionConfig)

    @property
    def run_dir(self) -> str:
        """The run's output folder."""
        return self.output_dir or os.path.join("runs", self.name)

    @property
    def export_name(self) -> str:
        """The model name under saved_models/."""
        return self.export.name or self.name


def load_experiment(path: str, overrides: Sequence[str] = (),
                    check_files: bool = False) -> Experiment:
    """Load and validate an experiment YAML file (plus ``key=value`` overrides).

    Every problem is found before any is reported (tfdldl.experiment_checks); nothing here
    imports Keras or TensorFlow, so a command line checks its config within a second.

    Args:
      check_files: also require the files the config names (data.tfrecords with its
        manifest.json, model.initial_weights), relative to the current folder.
    Raises:
      ConfigError: unknown keys, wrong types, values out of their range, (check_files)
        missing files: all of them, each naming the file, the key and the fix.
    """
    from tfdldl import experiment_checks

    problems: list[str] = []
    experiment = load_config(path, Experiment, overrides, problems)
    sources = Sources(path, overrides)  # a value an override gave is blamed on it
    problems += experiment_checks.value_problems(experiment, sources, problems)
    if check_files:
        problems += experiment_checks.file_problems(experiment, sources)
    if problems:
        raise ConfigError(problems)
    return experiment


def validate(experiment: Experiment, source: str) -> None:
    """Range checks that types alone cannot express (tfdldl.experiment_checks).

    Raises:
      ConfigError: every problem found, each naming the key and ``source``.
    """
    from tfdldl import experiment_checks

    problems = experiment_checks.value_problems(experiment, source)
    if problems:
        raise ConfigError(problems)


def resolve_heads(experiment: Experiment) -> list[HeadConfig]:
    """The experiment's heads as a full ``heads:`` list (every default filled in).

    The one place the older single-head form maps onto heads: ``loss: {name, lam,
    kl_normalization}`` is a label head named after the task (kind from the loss,
    tfdldl.head_kinds.KIND_OF_LOSS; weight 1), and ``gender: {names, weight}`` with names a
    categorical head named "gender" on the records' gender codes.
    """
    if not experiment.heads:
        loss = experiment.loss
        resolved = [HeadConfig(name=experiment.task, kind=head_kinds.KIND_OF_LOSS[loss.name],
                               attribute=experiment.task, loss=loss.name, lam=loss.lam,
                               kl_normalization=loss.kl_normalization)]
        if experiment.gender.names:
            resolved.append(HeadConfig(name=GENDER_SECTION, kind=head_kinds.CATEGORICAL.name,
                                       attribute=GENDER_SECTION,
                                       loss=head_kinds.CATEGORICAL.loss_names[0],
                                       weight=experiment.gender.weight,
                                       names=list(experiment.gender.names)))
        return resolved
    return [dataclasses.replace(
        spec, attribute=spec.attribute or attribute_of(experiment, spec),
        loss=spec.loss or head_kinds.KINDS_ALL[spec.kind].loss_names[0])
        for spec in experiment.heads]


def label_head(experiment: Experiment) -> HeadConfig:
    """The resolved label head (the one that predicts the record's label)."""
    return next(spec for spec in resolve_heads(experiment)
                if spec.kind in head_kinds.LABEL_KINDS)


def categorical_heads(experiment: Experiment) -> list[HeadConfig]:
    """The resolved categorical heads, in config order; [] without any."""
    return [spec for spec in resolve_heads(experiment)
            if spec.kind == head_kinds.CATEGORICAL.name]


def into_label(model: Mapping[str, Any]) -> str:
    """The categorical head fed into the label head by a ``model:`` section (a ModelConfig's
    fields, or the dict a SavedModel's config asset holds): ``into_label``, or the gender
    section's head for the older ``gender_into_age: true``; "" = none."""
    return model.get("into_label") or (GENDER_SECTION if model.get("gender_into_age") else "")


def attribute_of(experiment: Experiment, spec: HeadConfig) -> str:
    """What a heads entry of a known kind predicts when it names nothing: the task for a
    label head, the record feature named like the head for a categorical one."""
    if spec.kind == head_kinds.CATEGORICAL.name:
        return spec.name
    return head_kinds.KINDS_ALL[spec.kind].attribute or experiment.task


def _stdout_is_terminal() -> bool:
    """Whether Keras' progress display (written to sys.stdout) reaches a terminal."""
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False
