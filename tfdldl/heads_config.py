"""Checks of an experiment's ``heads:`` list (tfdldl.experiment.HeadConfig), each error
naming the entry's key, the config file and the fix (called by tfdldl.experiment.validate)."""

from __future__ import annotations

from tfdldl import heads
from tfdldl.config import ConfigError
from tfdldl.experiment import (Experiment, GenderConfig, HeadConfig, LossConfig, attribute_of,
                               resolve_heads)


def check_heads(experiment: Experiment, source: str) -> None:
    """Raise ConfigError (naming heads[i].key, the file and the fix) unless the ``heads``
    list holds distinct names, known kinds with their own losses and attributes, usable
    weights, exactly one label head and at most one gender head; or, without the list, a
    known ``loss.name``."""
    if not experiment.heads and experiment.loss.name not in heads.LOSS_NAMES:
        raise ConfigError(f"{source}: 'loss.name' must be one of "
                          f"{', '.join(map(repr, heads.LOSS_NAMES))}, got "
                          f"{experiment.loss.name!r}")
    if experiment.heads and (experiment.loss != LossConfig()
                             or experiment.gender != GenderConfig()):
        raise ConfigError(f"{source}: give the heads either as a 'heads' list or in the "
                          "older 'loss'/'gender' sections, not both; move the loss and "
                          "gender settings into the heads' entries")
    seen: dict[str, int] = {}
    for i, spec in enumerate(experiment.heads):
        where = f"{source}: 'heads[{i}]"
        if spec.kind not in heads.KINDS_ALL:
            raise ConfigError(f"{where}.kind' must be one of "
                              f"{', '.join(map(repr, heads.KINDS_ALL))}, got {spec.kind!r}")
        if not spec.name or spec.name in seen:
            raise ConfigError(f"{where}.name' " + (
                f"{spec.name!r} is also the name of heads[{seen[spec.name]}]; give every "
                "head its own name" if spec.name else "must be a non-empty name, e.g. "
                f"name: {attribute_of(experiment, spec.kind)}"))
        seen[spec.name] = i
        for key, requirement in _head_problems(experiment, spec):
            raise ConfigError(f"{where}.{key}' {requirement}")
    kinds = [spec.kind for spec in resolve_heads(experiment)]
    label = [kind for kind in kinds if kind in heads.HEADS]
    if len(label) != 1 or kinds.count("gender") > 1:
        raise ConfigError(f"{source}: 'heads' must hold exactly one label head (kind "
                          f"{', '.join(heads.KINDS)}) and at most one gender head, got kinds "
                          f"{kinds}; the model has one output of each")


def _head_problems(experiment: Experiment, spec: HeadConfig) -> list[tuple[str, str]]:
    """(key, requirement) of each problem of one heads entry of a known kind."""
    head = heads.KINDS_ALL[spec.kind]
    expected = attribute_of(experiment, spec.kind)
    gender = spec.kind == "gender"
    problems = [
        ("attribute", spec.attribute in ("", expected),
         f"must be {expected!r}: a {spec.kind} head predicts "
         + ("the records' gender" if gender else "the records' label, the experiment's task")
         + f", got {spec.attribute!r}"),
        ("loss", spec.loss in ("", *head.loss_names),
         f"{spec.loss!r} does not train a {spec.kind} head; choose one of "
         f"{', '.join(head.loss_names)}" + (f" (or kind {heads.for_loss(spec.loss).kind} for "
                                            f"{spec.loss})" if spec.loss in heads.LOSS_NAMES
                                           else "")),
        ("weight", 0.0 <= spec.weight < float("inf"), f"must be finite and >= 0, got "
         f"{spec.weight}"),
        ("weight", experiment.loss_weighting == "fixed" or spec.weight == 1.0,
         "must be 1 with loss_weighting: uncertainty (the weights are learned); remove it, "
         "or set loss_weighting: fixed"),
        ("lam", 0.0 <= spec.lam < float("inf"), "must be finite and >= 0"),
        ("names", not gender or (len(spec.names) >= 2
                                 and len(set(spec.names)) == len(spec.names)),
         "must be at least two distinct class names in record-code order, e.g. "
         "[male, female]"),
        ("names", gender or not spec.names, "are only for a gender head; remove them"),
    ]
    return [(key, requirement) for key, ok, requirement in problems if not ok]
