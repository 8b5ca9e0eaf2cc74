"""The checks of an experiment config that its types cannot express (tfdldl.experiment).

Each returns every problem it finds as a line naming where the value came from (the config
file, or the ``--set`` override that gave it: tfdldl.config.Sources), the dotted key, what
is wrong (the value) and what would do, so that one run of a command reports them all.
Nothing here imports Keras or TensorFlow: ``python -m tfdldl.train`` checks its config
within a second, before it imports them.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from tfdldl import head_kinds
from tfdldl.config import Sources, excerpt
from tfdldl.example_schema import MANIFEST_NAME
from tfdldl.experiment import GENDER_SECTION, Experiment, into_label


def value_problems(experiment: Experiment, source: str | Sources,
                   read_problems: Sequence[str] = ()) -> list[str]:
    """The out-of-range and conflicting values of ``experiment`` (read from ``source``, a
    file or the file with its overrides): the sections' ranges, the categorical heads'
    settings and the heads (tfdldl.heads_config).

    read_problems: the problems found while reading the config (tfdldl.config.load_config,
    which leaves a bad value at its default): the head fed into the label head is not
    looked for when the heads or the gender section could not be read."""
    from tfdldl.heads_config import heads_problems

    sources = _sources(source)
    unread = any(f"'{section}" in problem for problem in read_problems
                 for section in ("heads", GENDER_SECTION))
    problems = [f"{sources.of(key)}: '{key}' {requirement}" + _got(experiment, key)
                for key, ok, requirement
                in _range_checks(experiment) + _categorical_checks(experiment, unread)
                if not ok]
    return problems + heads_problems(experiment, sources)


def file_problems(experiment: Experiment, source: str | Sources) -> list[str]:
    """The files ``experiment`` names that are not there (paths relative to the current
    folder): the TFRecord folder with its manifest, the initial weights."""
    problems, sources = [], _sources(source)
    data = experiment.data.tfrecords
    if not os.path.isdir(data):
        problems.append(f"{sources.of('data.tfrecords')}: 'data.tfrecords' {_shown(data)} "
                        "is not a folder; give the folder data_prep.build wrote (it holds "
                        "manifest.json), or build it: python -m data_prep.build --config "
                        "configs/<data config>.yaml")
    elif not os.path.isfile(os.path.join(data, MANIFEST_NAME)):
        problems.append(f"{sources.of('data.tfrecords')}: 'data.tfrecords' {_shown(data)} "
                        f"has no {MANIFEST_NAME}: it is not a data_prep.build folder, or the "
                        "build did not finish (rerun data_prep.build: it resumes)")
    else:
        problems += _group_head_problems(experiment, sources)
    weights = experiment.model.initial_weights
    if weights and not os.path.isfile(weights):
        problems.append(f"{sources.of('model.initial_weights')}: 'model.initial_weights' "
                        f"{_shown(weights)} is not a file; give a .keras or .weights.h5 "
                        "file, or null to train from scratch")
    return problems


def _group_head_problems(experiment: Experiment, sources: Sources) -> list[str]:
    """The categorical heads on the records' group codes that the data (data.tfrecords'
    manifest: its group section names the codes 0..L-1) cannot train: none defined, or
    fewer class names than codes (the codes past the names would be dropped unseen)."""
    from tfdldl.example_schema import GROUP
    from tfdldl.heads_config import where_in_heads
    from tfdldl.manifest import ManifestError, read_manifest

    on_groups = [i for i, spec in enumerate(experiment.heads)
                 if spec.kind == head_kinds.CATEGORICAL.name
                 and (spec.attribute or spec.name) == GROUP]
    if not on_groups:  # the manifest is read (and its shards checked) only when needed
        return []
    try:
        group, labels = read_manifest(experiment.data.tfrecords).group_names()
    except (ManifestError, OSError, ValueError):  # train and evaluate say what is wrong
        return []
    problems = []
    for i in on_groups:
        spec = experiment.heads[i]
        if not labels:
            problems.append(f"{where_in_heads(sources, i, 'attribute')} is {GROUP!r}, but "
                            f"the data in {_shown(experiment.data.tfrecords)} defines no "
                            "group codes (its manifest has no group section: every record's "
                            "code is -1), so the head would never be trained; remove the "
                            "head or train on data with groups")
        elif len(spec.names) < len(labels):
            problems.append(f"{where_in_heads(sources, i, 'names')} gives {len(spec.names)} "
                            f"classes, but the data's {group or GROUP} codes run "
                            f"0..{len(labels) - 1} ({', '.join(labels)}); give one name per "
                            "code in that order, e.g. "
                            f"[{', '.join(label.lower() for label in labels)}]")
    return problems


def _sources(source: str | Sources) -> Sources:
    return source if isinstance(source, Sources) else Sources(source)


def _shown(path: str) -> str:
    """``path`` quoted, with its absolute form when it is relative."""
    absolute = os.path.abspath(path)
    return repr(path) + ("" if absolute == path else f" ({absolute})")


def _got(experiment: Experiment, key: str) -> str:
    """", got <value>" for the value at the dotted ``key`` (not for a switch: a bool's
    requirement says what it needs)."""
    value: Any = experiment
    for part in key.split("."):
        value = getattr(value, part)
    return "" if isinstance(value, bool) else f", got {excerpt(value)}"


def _range_checks(experiment: Experiment) -> list[tuple[str, bool, str]]:
    """(key, ok, requirement) of every section's ranges."""
    train, optimizer, augment = experiment.train, experiment.optimizer, experiment.augment
    return [
        ("train.epochs", train.epochs >= 1, "must be >= 1"),
        ("train.batch_size", train.batch_size >= 1, "must be >= 1"),
        ("train.steps_per_epoch", train.steps_per_epoch is None or train.steps_per_epoch >= 1,
         "must be >= 1 or null"),
        ("train.backup_every_steps", train.backup_every_steps >= 1, "must be >= 1"),
        ("train.verbose", train.verbose in (0, 1, 2),
         "must be 0 (silent), 1 (a progress bar per step) or 2 (a line per epoch), or be "
         "left out (1 on a terminal, 2 in a log)"),
        ("model.input_size", experiment.model.input_size >= 32, "must be >= 32 pixels"),
        ("optimizer.learning_rate", optimizer.learning_rate > 0, "must be > 0"),
        ("optimizer.decay_every_epochs", optimizer.decay_every_epochs >= 1, "must be >= 1"),
        ("optimizer.warmup_epochs", 0 <= optimizer.warmup_epochs < train.epochs,
         f"must lie in [0, train.epochs) (train.epochs is {train.epochs})"),
        ("augment.grayscale_probability", 0.0 <= augment.grayscale_probability <= 1.0,
         "must lie in [0, 1]"),
        ("augment.rescale_min", 0.0 < augment.rescale_min <= augment.rescale_max,
         f"must be > 0 and <= augment.rescale_max ({augment.rescale_max})"),
        ("augment.rotation_degrees", 0.0 <= augment.rotation_degrees < 180.0,
         "must lie in [0, 180)"),
        ("augment.color_jitter", 0.0 <= augment.color_jitter < 1.0, "must lie in [0, 1)"),
        ("augment.translate", 0.0 <= augment.translate <= 0.25, "must lie in [0, 0.25]"),
        *[(f"augment.{name}", 0.0 <= getattr(augment, name) <= 1.0, "must lie in [0, 1]")
          for name in ("blur_probability", "downscale_probability", "jpeg_probability")],
        ("augment.downscale_min", 0.05 <= augment.downscale_min <= 1.0,
         "must lie in [0.05, 1]"),
        ("augment.jpeg_quality_min",
         1 <= augment.jpeg_quality_min <= augment.jpeg_quality_max <= 100,
         "must satisfy 1 <= jpeg_quality_min <= jpeg_quality_max <= 100 (jpeg_quality_max "
         f"is {augment.jpeg_quality_max})"),
        ("augment.noise_std", 0.0 <= augment.noise_std <= 64.0,
         "must lie in [0, 64] (0..255 pixel units)"),
        ("augment.color_cast", 0.0 <= augment.color_cast < 1.0, "must lie in [0, 1)"),
        ("data.shuffle_buffer", experiment.data.shuffle_buffer >= 1, "must be >= 1"),
        ("export.version", experiment.export.version >= 1, "must be >= 1"),
        ("name", bool(experiment.name) and "/" not in experiment.name,
         "must be a non-empty name without '/'"),
    ]


def _categorical_checks(experiment: Experiment,
                        heads_unread: bool) -> list[tuple[str, bool, str]]:
    """(key, ok, requirement) for the gender section and the head fed into the label (not
    looked for when ``heads_unread``: the heads' problems say what to fix first)."""
    from tfdldl.heads_config import codes_problem

    names = experiment.gender.names
    too_many = codes_problem(GENDER_SECTION, names)
    fed = "" if heads_unread else into_label(vars(experiment.model))
    heads = [spec.name for spec in experiment.heads
             if spec.kind == head_kinds.CATEGORICAL.name] + ([GENDER_SECTION] if names else [])
    label = [spec.name for spec in experiment.heads
             if spec.kind in head_kinds.LABEL_KINDS] or [experiment.task]
    key = "model.into_label" if experiment.model.into_label else "model.gender_into_age"
    return [
        ("gender.names", not names or (len(names) >= 2 and len(set(names)) == len(names)),
         "must be empty (no gender head) or at least two distinct names in record-code "
         "order, e.g. [male, female]"),
        ("gender.names", not too_many, too_many),
        ("gender.weight", 0.0 <= experiment.gender.weight < float("inf"),
         "must be finite and >= 0"),
        (key, not fed or fed in heads,
         (f"names the label head {fed!r}, which cannot feed itself" if fed in label else
          f"needs the {fed} head: give a heads entry of kind categorical named {fed!r}"
          + (" (or gender.names)" if fed == GENDER_SECTION else ""))
         + f"; the categorical heads are {heads} (set "
         + ("model.into_label: ''" if experiment.model.into_label
            else "model.gender_into_age: false") + " to feed none)"),
    ]
