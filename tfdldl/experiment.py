"""The typed experiment config read by ``python -m tfdldl.train --config configs/<exp>.yaml``.

One YAML file per experiment; every key below has the paper's default, so a file only
states what differs. Loaded with :func:`tfdldl.config.load_config`: a typo or a wrong
type is a :class:`tfdldl.config.ConfigError` naming the key and the file.

Sizes are pixels, learning rates are per step, epochs count passes over the train split.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional, Sequence

from tfdldl.config import ConfigError, load_config

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
    # Feed the predicted gender probabilities into the age head through a small learned
    # embedding (tfdldl.models.build_model); needs the gender head (gender.names).
    gender_into_age: bool = False
    # CBAM channel + spatial attention on the last conv block, before pooling
    # (tfdldl.layers.ConvBlockAttention).
    attention: bool = False


@dataclasses.dataclass
class GenderConfig:
    """The gender head (tfdldl.heads.GenderHead), trained beside the age head.

    names: the gender class names in the records' code order (UTKFace: [male, female]);
      empty (the default) = no gender head. The model keeps them and the SavedModel lists
      them (export_info.json's class_names), so the columns of ``gender_probability`` are
      named by the data's config, not by code.
    weight: the fixed loss weight of the gender cross-entropy (masked where the record's
      gender is unknown); the age losses keep theirs (1 and loss.lam).
    """

    names: list[str] = dataclasses.field(default_factory=list)
    weight: float = 1.0


@dataclasses.dataclass
class LossConfig:
    """The training loss (tfdldl.heads.build_loss); the head follows from the name.

    name: one of tfdldl.heads.LOSS_NAMES (dldl_v2, dldl, er, dex, mr_l1, mr_l2, ranking).
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
          - {name: gender, kind: gender, attribute: gender, loss: masked_cross_entropy,
             weight: 1.0, names: [male, female]}

    name: the head's own name, unique (logs: loss_weight_<name> under learned weighting).
    kind: "distribution", "regression" or "ranking" (a label head, exactly one: it
      predicts the record's label) or "gender" (at most one; tfdldl.heads.KINDS_ALL).
    attribute: what it predicts: the experiment's ``task`` for a label head, "gender" for
      the gender head; "" = that default.
    loss: one of the kind's losses (distribution: dldl_v2, dldl, er, dex; regression: mr_l1,
      mr_l2; ranking: ranking; gender: masked_cross_entropy); "" = the kind's first.
    weight: the fixed weight of the head's whole loss (finite, >= 0); leave it at 1 with
      ``loss_weighting: uncertainty`` (the weights are learned).
    lam, kl_normalization: dldl_v2's λ and the KL convention (label heads; tfdldl.losses).
    names: the class names in record-code order (gender: at least two, e.g. [male, female]).
    """

    name: str = ""
    kind: str = ""
    attribute: str = ""
    loss: str = ""
    weight: float = 1.0
    lam: float = 1.0
    kl_normalization: Literal["sum", "mean"] = "sum"
    names: list[str] = dataclasses.field(default_factory=list)


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
    jit_compile: compile the step with XLA.
    onednn: TensorFlow's oneDNN CPU kernels instead of Eigen's (``TF_ENABLE_ONEDNN_OPTS``,
      which TensorFlow reads once when it loads; tfdldl.train sets it, see
      tfdldl.model_setup.use_onednn). Same maths, other round-off; on this project's AVX2
      CPU the non-XLA step is ~1.7x faster with it, and faster than XLA's.
    """

    epochs: int = 60
    batch_size: int = 128
    steps_per_epoch: Optional[int] = None
    backup_every_steps: int = 200
    jit_compile: bool = False
    onednn: bool = True
    verbose: int = 1


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


def load_experiment(path: str, overrides: Sequence[str] = ()) -> Experiment:
    """Load and validate an experiment YAML file (plus ``key=value`` overrides).

    Raises:
      ConfigError: unknown key, wrong type, or values out of their range (each message
        names the key and the file).
    """
    experiment = load_config(path, Experiment, overrides)
    validate(experiment, path)
    return experiment


def validate(experiment: Experiment, source: str) -> None:
    """Range checks that types alone cannot express; raises ConfigError naming the key."""
    checks = [
        ("train.epochs", experiment.train.epochs >= 1, "must be >= 1"),
        ("train.batch_size", experiment.train.batch_size >= 1, "must be >= 1"),
        ("train.steps_per_epoch",
         experiment.train.steps_per_epoch is None or experiment.train.steps_per_epoch >= 1,
         "must be >= 1 or null"),
        ("train.backup_every_steps", experiment.train.backup_every_steps >= 1, "must be >= 1"),
        ("model.input_size", experiment.model.input_size >= 32, "must be >= 32 pixels"),
        ("optimizer.learning_rate", experiment.optimizer.learning_rate > 0, "must be > 0"),
        ("optimizer.decay_every_epochs", experiment.optimizer.decay_every_epochs >= 1,
         "must be >= 1"),
        ("optimizer.warmup_epochs",
         0 <= experiment.optimizer.warmup_epochs < experiment.train.epochs,
         "must lie in [0, train.epochs)"),
        ("augment.grayscale_probability",
         0.0 <= experiment.augment.grayscale_probability <= 1.0, "must lie in [0, 1]"),
        ("augment.rescale_min",
         0.0 < experiment.augment.rescale_min <= experiment.augment.rescale_max,
         "must be > 0 and <= augment.rescale_max"),
        ("augment.rotation_degrees", 0.0 <= experiment.augment.rotation_degrees < 180.0,
         "must lie in [0, 180)"),
        ("augment.color_jitter", 0.0 <= experiment.augment.color_jitter < 1.0,
         "must lie in [0, 1)"),
        ("augment.translate", 0.0 <= experiment.augment.translate <= 0.25,
         "must lie in [0, 0.25]"),
        *[(f"augment.{name}", 0.0 <= getattr(experiment.augment, name) <= 1.0,
           "must lie in [0, 1]")
          for name in ("blur_probability", "downscale_probability", "jpeg_probability")],
        ("augment.downscale_min", 0.05 <= experiment.augment.downscale_min <= 1.0,
         "must lie in [0.05, 1]"),
        ("augment.jpeg_quality_min",
         1 <= experiment.augment.jpeg_quality_min <= experiment.augment.jpeg_quality_max <= 100,
         "must satisfy 1 <= jpeg_quality_min <= jpeg_quality_max <= 100"),
        ("augment.noise_std", 0.0 <= experiment.augment.noise_std <= 64.0,
         "must lie in [0, 64] (0..255 pixel units)"),
        ("augment.color_cast", 0.0 <= experiment.augment.color_cast < 1.0,
         "must lie in [0, 1)"),
        ("data.shuffle_buffer", experiment.data.shuffle_buffer >= 1, "must be >= 1"),
        ("export.version", experiment.export.version >= 1, "must be >= 1"),
        ("name", bool(experiment.name) and "/" not in experiment.name,
         "must be a non-empty name without '/'"),
        *_gender_checks(experiment),
    ]
    for key, ok, requirement in checks:
        if not ok:
            raise ConfigError(f"{source}: '{key}' {requirement}")
    # (Keras: imported once a config is read, not for --help)
    from tfdldl.heads_config import check_heads

    check_heads(experiment, source)


def resolve_heads(experiment: Experiment) -> list[HeadConfig]:
    """The experiment's heads as a full ``heads:`` list (every default filled in).

    The one place the older single-head form maps onto heads: ``loss: {name, lam,
    kl_normalization}`` is a label head named after the task (kind from the loss,
    tfdldl.heads.for_loss; weight 1), and ``gender: {names, weight}`` with names a gender
    head named "gender".
    """
    from tfdldl import heads

    if not experiment.heads:
        loss = experiment.loss
        resolved = [HeadConfig(name=experiment.task, kind=heads.for_loss(loss.name).kind,
                               attribute=experiment.task, loss=loss.name, lam=loss.lam,
                               kl_normalization=loss.kl_normalization)]
        if experiment.gender.names:
            resolved.append(HeadConfig(name="gender", kind=heads.GENDER.kind,
                                       attribute=heads.GENDER.attribute,
                                       loss=heads.GENDER.loss_names[0],
                                       weight=experiment.gender.weight,
                                       names=list(experiment.gender.names)))
        return resolved
    return [dataclasses.replace(
        spec, attribute=spec.attribute or attribute_of(experiment, spec.kind),
        loss=spec.loss or heads.KINDS_ALL[spec.kind].loss_names[0]) for spec in experiment.heads]


def label_head(experiment: Experiment) -> HeadConfig:
    """The resolved label head (the one that predicts the record's label)."""
    from tfdldl import heads

    return next(spec for spec in resolve_heads(experiment) if spec.kind in heads.HEADS)


def gender_names(experiment: Experiment) -> list[str]:
    """The gender head's class names; [] without a gender head."""
    return next((list(spec.names) for spec in resolve_heads(experiment)
                 if spec.kind == "gender"), [])


def attribute_of(experiment: Experiment, kind: str) -> str:
    """What a head of ``kind`` predicts: its own attribute, or the task for a label head."""
    from tfdldl import heads

    return heads.KINDS_ALL[kind].attribute or experiment.task


def _gender_checks(experiment: Experiment) -> list[tuple[str, bool, str]]:
    """(key, ok, requirement) for the gender section's settings (see :func:`validate`)."""
    names = experiment.gender.names
    has_gender = bool(names) or any(spec.kind == "gender" for spec in experiment.heads)
    return [
        ("gender.names", not names or (len(names) >= 2 and len(set(names)) == len(names)),
         "must be empty (no gender head) or at least two distinct names in record-code "
         "order, e.g. [male, female]"),
        ("gender.weight", 0.0 <= experiment.gender.weight < float("inf"),
         "must be finite and >= 0"),
        ("model.gender_into_age", not experiment.model.gender_into_age or has_gender,
         "needs the gender head: give gender.names (or a heads entry of kind gender)"),
    ]
