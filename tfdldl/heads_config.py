"""Checks of an experiment's ``heads:`` list (tfdldl.experiment.HeadConfig), each problem
naming the entry's key, the config file and the fix (called by tfdldl.experiment_checks).
Keras-free: the kinds and losses are tfdldl.head_kinds' names."""

from __future__ import annotations

import dataclasses

from tfdldl import example_schema, head_kinds
from tfdldl.config import Sources
from tfdldl.experiment import (GENDER_SECTION, Experiment, GenderConfig, HeadConfig,
                               LossConfig, attribute_of, resolve_heads)

# The record features a categorical head may predict: the schema's integer codes with -1
# for unknown (UTKFace: "gender", and "group", the race).
CODE_ATTRIBUTES = tuple(feature.key for feature in example_schema.FEATURES
                        if feature.dtype == "int" and feature.shape == ()
                        and feature.default == -1)


def heads_problems(experiment: Experiment, sources: Sources) -> list[str]:
    """Every problem (a line naming heads[i].key, where it came from, the file or the --set
    that gave the list, and the fix) of the ``heads`` list, which must hold distinct names,
    known kinds with their own losses and attributes, usable weights and exactly one label
    head; or, without the list, of ``loss.name``, which must be a known loss."""
    kinds = ", ".join(map(repr, head_kinds.KINDS_ALL))
    if not experiment.heads and experiment.loss.name not in head_kinds.LOSS_NAMES:
        return [f"{sources.of('loss.name')}: 'loss.name' must be one of "
                f"{', '.join(map(repr, head_kinds.LOSS_NAMES))}, got {experiment.loss.name!r}"]
    problems = _both_forms_problems(experiment, sources)
    seen: dict[str, int] = {}
    for i, spec in enumerate(experiment.heads):
        known = spec.kind in head_kinds.KINDS_ALL
        if not known:
            problems.append(f"{where_in_heads(sources, i, 'kind')} must be one of {kinds}, "
                            f"got {spec.kind!r}"
                            + (f"; a head on the records' {spec.kind} codes is kind "
                               f"{head_kinds.CATEGORICAL.name} with attribute {spec.kind}"
                               if spec.kind in CODE_ATTRIBUTES else ""))
        if spec.name in seen:
            problems.append(f"{where_in_heads(sources, i, 'name')} {spec.name!r} is also the "
                            f"name of heads[{seen[spec.name]}]; give every head its own name")
        elif not spec.name:
            example = spec.attribute or (CODE_ATTRIBUTES[0] if spec.kind ==
                                         head_kinds.CATEGORICAL.name else experiment.task)
            problems.append(f"{where_in_heads(sources, i, 'name')} must be a non-empty name, "
                            f"e.g. name: {example}")
        seen.setdefault(spec.name, i)
        if known and spec.name:
            problems += [f"{where_in_heads(sources, i, key)} {requirement}"
                         for key, requirement in _head_problems(experiment, spec)]
    if problems:  # the heads' count and kinds mean little before each entry is right
        return problems
    problems += _column_problems(experiment, sources)
    kinds_given = [spec.kind for spec in resolve_heads(experiment)]
    if sum(kind in head_kinds.LABEL_KINDS for kind in kinds_given) != 1:
        kind_keys = [f"heads[{i}].kind" for i in range(len(experiment.heads))]
        problems.append(f"{_blame(sources, kind_keys)}: 'heads' must hold exactly one label head "
                        f"(kind {', '.join(head_kinds.LABEL_KINDS)}) and any number of "
                        f"{head_kinds.CATEGORICAL.name} heads, got kinds {kinds_given}; the "
                        "model has one label output")
    return problems


def _both_forms_problems(experiment: Experiment, sources: Sources) -> list[str]:
    """The problem of a ``heads`` list given beside the older 'loss'/'gender' sections,
    naming where the list and each changed key of those sections came from."""
    changed = [f"{section}.{field.name}" for section, default in
               (("loss", LossConfig()), (GENDER_SECTION, GenderConfig()))
               for field in dataclasses.fields(default)
               if getattr(getattr(experiment, section), field.name)
               != getattr(default, field.name)]
    if not experiment.heads or not changed:
        return []
    return [f"{_blame(sources, ['heads', *changed])}: give the heads either as a 'heads' "
            "list or in the older 'loss'/'gender' sections, not both; move the loss and the "
            "categorical head's settings into the heads' entries"]


def _blame(sources: Sources, keys: list[str]) -> str:
    """Where the values at ``keys`` came from: the one source, or each with its sections
    ("x.yaml (heads) and --set 'gender.names=[m, f]' (gender)")."""
    origins: dict[str, dict[str, None]] = {}
    for key in keys:
        origins.setdefault(sources.of(key), {})[key.split(".")[0]] = None
    if len(origins) == 1:
        return next(iter(origins))
    return " and ".join(f"{origin} ({', '.join(sections)})"
                        for origin, sections in origins.items())


def where_in_heads(sources: Sources, index: int, key: str) -> str:
    """How a problem of heads[index].key begins: where the value came from (the file, the
    --set that gave the list, the entry or the key) and the quoted key."""
    dotted = f"heads[{index}].{key}"
    return f"{sources.of(dotted)}: '{dotted}'"


def _column_problems(experiment: Experiment, sources: Sources) -> list[str]:
    """The categorical heads whose names would take a field that prediction rows
    (tfdldl.predict_output.FIELDS) or AgeEstimator faces (tfdldl.api.Face) already have, or
    another head's ``<name>_confidence``: predict's columns and ``face.<name>`` would then
    give the wrong value."""
    if not any(spec.kind == head_kinds.CATEGORICAL.name for spec in experiment.heads):
        return []  # no categorical head: no need to import predict_output (cv2) and api
    from tfdldl import api, predict_output
    from tfdldl.output_names import CONFIDENCE_SUFFIX

    fields = sorted({*predict_output.FIELDS, *(f.name for f in dataclasses.fields(api.Face)),
                     *(name for name in dir(api.Face) if not name.startswith("_"))})
    confidences = {spec.name + CONFIDENCE_SUFFIX: spec.name for spec in experiment.heads
                   if spec.kind == head_kinds.CATEGORICAL.name}
    problems = []
    for i, spec in enumerate(experiment.heads):
        where = f"{where_in_heads(sources, i, 'name')} {spec.name!r}"
        if spec.kind != head_kinds.CATEGORICAL.name:
            continue
        if spec.name in fields:
            problems.append(f"{where} is a field that prediction rows or AgeEstimator faces "
                            f"already have ({', '.join(fields)}); rename the head, e.g. "
                            f"{spec.name}_class")
        elif spec.name in confidences:
            problems.append(f"{where} is the confidence column of the head "
                            f"{confidences[spec.name]!r}; rename one of them")
    return problems


def _head_problems(experiment: Experiment, spec: HeadConfig) -> list[tuple[str, str]]:
    """(key, requirement) of each problem of one named heads entry of a known kind."""
    head = head_kinds.KINDS_ALL[spec.kind]
    categorical = spec.kind == head_kinds.CATEGORICAL.name
    attribute = spec.attribute or attribute_of(experiment, spec)
    too_many = codes_problem(attribute, spec.names) if categorical else ""
    if categorical:
        attribute_check = (
            attribute in CODE_ATTRIBUTES,
            f"must name the record codes a categorical head predicts, one of "
            f"{', '.join(CODE_ATTRIBUTES)} (tfdldl.example_schema), got {attribute!r}"
            + ("" if spec.attribute else " (the head's name, as no attribute is given)"))
    else:
        attribute_check = (spec.attribute in ("", experiment.task),
                           f"must be {experiment.task!r}: a {spec.kind} head predicts the "
                           f"records' label, the experiment's task, got {spec.attribute!r}")
    problems = [
        ("name", spec.name.isidentifier() and spec.name.isascii(),
         f"must be letters, digits and _ (not starting with a digit), got {spec.name!r}: it "
         f"names outputs, columns and face.<name>; e.g. {_identifier(spec.name)}"),
        ("attribute", *attribute_check),
        ("loss", spec.loss in ("", *head.loss_names),
         f"{spec.loss!r} does not train a {spec.kind} head; choose one of "
         f"{', '.join(head.loss_names)}"
         + (f" (or kind {head_kinds.KIND_OF_LOSS[spec.loss]} for {spec.loss})"
            if spec.loss in head_kinds.KIND_OF_LOSS else "")),
        ("weight", 0.0 <= spec.weight < float("inf"), f"must be finite and >= 0, got "
         f"{spec.weight}"),
        ("weight", spec.weight != 0.0, "is 0: the head would be exported and served "
         "untrained; give it a weight > 0, or remove the entry to drop the head"),
        ("weight", experiment.loss_weighting == "fixed" or spec.weight == 1.0,
         "must be 1 with loss_weighting: uncertainty (the weights are learned); remove it, "
         "or set loss_weighting: fixed"),
        ("lam", 0.0 <= spec.lam < float("inf"), "must be finite and >= 0"),
        ("names", not categorical or (len(spec.names) >= 2 and all(spec.names)
                                      and len(set(spec.names)) == len(spec.names)),
         "must be at least two distinct class names in record-code order, none empty, "
         "e.g. [male, female]"),
        ("names", not too_many, too_many),
        ("lam", not categorical or spec.lam == 1.0,
         "is a label head's setting (dldl_v2's λ); remove it from the categorical head"),
        ("kl_normalization", not categorical or spec.kl_normalization == "sum",
         "is a label head's setting (the KL convention); remove it from the categorical head"),
        ("names", categorical or not spec.names, "are only for a categorical head; remove "
         "them"),
    ]
    return [(key, requirement) for key, ok, requirement in problems if not ok]


def codes_problem(attribute: str, names: list[str]) -> str:
    """Why ``names`` are too many class names for the record feature ``attribute``, whose
    codes the schema fixes (tfdldl.example_schema.Feature.codes: gender's 0 male, 1
    female); "" when they fit, or when the schema leaves the codes to the data (group)."""
    schema_feature = example_schema.BY_KEY.get(attribute)
    codes = schema_feature.codes if schema_feature else ()
    if not codes or len(names) <= len(codes):
        return ""
    shown = [f"{code} ({name})" for code, name in enumerate(codes)]
    return (f"gives {len(names)} classes, but the records' {attribute} codes are only "
            f"{', '.join(shown[:-1])} and {shown[-1]} (tfdldl.example_schema); give at most "
            f"{len(codes)} names in that order, e.g. [{', '.join(codes)}]")


def _identifier(name: str) -> str:
    """A head name like ``name`` made of letters, digits and _: "race group" -> "race_group",
    "2race" -> "head_2race"."""
    words = "".join(c if c.isascii() and c.isalnum() else " " for c in name).split()
    joined = "_".join(words)
    return joined if joined.isidentifier() else f"head_{joined}".rstrip("_")
