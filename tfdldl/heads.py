"""Heads: each kind of model output, owned in one place from the record to the serving outputs.

A head owns, for its output:

- its Keras layers on the pooled features (:meth:`Head.build`) and the model output names
  they produce (:attr:`Head.outputs`);
- the training losses that fit it, by name, with their weights (:meth:`Head.build_loss`,
  :func:`compile_losses` for an experiment's ``heads:`` list, fixed or learned weights);
- its training targets from the record features it names (:attr:`Head.record_fields`,
  tfdldl.example_schema keys), as NumPy arrays (host pipeline) or TensorFlow tensors
  (tf.data) (:meth:`Head.targets`);
- its post-processing (:meth:`Head.summarise`), written once in ``keras.ops``: the
  SavedModel's signatures, the ``.keras`` predictor and flip averaging (:func:`flip_average`)
  all use it, so every way of running a model returns the same keys and values.

The kinds (tfdldl.head_kinds.KINDS_ALL):

- the label heads of the paper's Table 3 (tfdldl.heads_label), one per model, predicting
  the record's label (the experiment's task): "distribution" (dldl_v2, dldl, er, dex),
  "regression" (mr_l1, mr_l2), "ranking" (ranking); serving outputs ``value`` [N],
  ``stddev`` [N] and (but regression) ``distribution`` [N, K];
- "categorical" (tfdldl.heads_categorical, any number beside a label head, each named
  by its config entry): ``<name>_probability`` [N, C] over the codes of one record feature
  (its attribute), loss masked_cross_entropy.

This module is the registry: the heads by kind and loss (:data:`LOSS_NAMES`,
:func:`for_loss`; their names come from the Keras-free :mod:`tfdldl.head_kinds`, which a
config is validated against), and the functions that find a model's heads from its
outputs. Adding a categorical head needs only a ``heads:`` entry in a config. Adding a
kind: its names in tfdldl.head_kinds, its class (layers, losses, targets, summary), its
entry in :data:`HEADS` (tfdldl.models builds any of them), a config and tests.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from keras import ops

from tfdldl import head_kinds
from tfdldl import layers as dldl_layers
from tfdldl import loss_weighting
from tfdldl import heads_categorical
from tfdldl.heads_categorical import CategoricalHead, HeadSet, class_attributes, class_names
from tfdldl.heads_categorical import of_model as categorical_heads
from tfdldl.heads_label import (LOGITS_LAYER, DistributionHead, Head, RankingHead,
                                RegressionHead, check_loss_settings,
                                distribution_from_ranking)
from tfdldl.label_space import LabelSpace
# The output names (the serving contract) live in a Keras-free module; heads.VALUE etc.
# stay the names the rest of the package uses.
from tfdldl.output_names import (DISTRIBUTION, RANKING, STDDEV, VALUE, categorical_head_of,
                                 probability_output)

__all__ = ["LOGITS_LAYER", "DISTRIBUTION", "RANKING", "STDDEV", "VALUE", "Head",
           "DistributionHead", "RegressionHead", "RankingHead", "CategoricalHead", "HeadSet",
           "categorical_heads", "class_attributes", "class_names", "distribution_from_ranking",
           "categorical_head_of", "probability_output"]

# What the pipelines' and predictors' target functions accept: a model's output names
# (categorical heads then read the record feature named like the head), or its heads
# (:func:`of_model`: categorical heads with their configured attributes).
Outputs = Union[Sequence[str], Head]

HEADS: dict[str, Head] = {head.kind: head
                          for head in (DistributionHead(), RegressionHead(), RankingHead())}
KINDS = tuple(HEADS)
# The one list of label losses, each with its head's kind (tfdldl.head_kinds owns both).
LOSS_NAMES = head_kinds.LOSS_NAMES


def get(kind: str) -> Head:
    """The head called ``kind``.

    Raises:
      ValueError: an unknown kind (the message lists the known ones).
    """
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(KINDS)}")
    return HEADS[kind]


def for_loss(name: str) -> Head:
    """The head a training loss fits.

    Raises:
      ValueError: an unknown loss (the message lists the known ones).
    """
    if name not in head_kinds.KIND_OF_LOSS:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    return HEADS[head_kinds.KIND_OF_LOSS[name]]


def build_loss(name: str, label_space: LabelSpace, lam: float = 1.0,
               kl_normalization: str = "sum") -> tuple[dict, dict]:
    """The losses and loss weights for ``model.compile`` for one of the paper's methods.

    Args:
      name: one of :data:`LOSS_NAMES` (see tfdldl.losses' table).
      label_space: the grid the model predicts on; the distribution and ranking losses
        check the width of what they receive against its K.
      lam: λ, the weight of the expectation L1 in dldl_v2 (>= 0; the paper uses 1).
      kl_normalization: "sum" or "mean" (tfdldl.losses); used by dldl_v2 and dldl.
    Returns:
      (losses, loss_weights): dicts keyed by model output name, to pass as
      ``model.compile(loss=losses, loss_weights=loss_weights)``.
    Raises:
      ValueError: unknown name or normalisation, or a negative/non-finite λ.
    """
    return for_loss(name).build_loss(name, label_space, *check_loss_settings(lam,
                                                                          kl_normalization))


def compile_losses(specs: Sequence[Any], label_space: LabelSpace,
                   weighting: Optional[loss_weighting.LossWeights] = None) -> tuple[dict, dict]:
    """The losses and loss weights for ``model.compile`` of an experiment's heads.

    Args:
      specs: the resolved ``heads:`` entries (tfdldl.experiment.resolve_heads: kind,
        name, attribute, loss, weight, lam, kl_normalization, names), one label head and
        any categorical heads.
      label_space: the grid the model predicts on.
      weighting: None for fixed weights (each head's losses x its ``weight``); the model's
        :class:`tfdldl.loss_weighting.LossWeights` layer for learned uncertainty weights
        (each head contributes exp(-s_i)·L_i + s_i; its ``weight`` must then be 1).
    Returns:
      (losses, loss_weights) keyed by model output name.
    Raises:
      ValueError: an unknown kind, a loss that does not train its kind, bad λ or
        normalisation, or a weight that is negative, non-finite, or not 1 under learned
        weighting.
    """
    losses: dict = {}
    weights: dict = {}
    for spec in specs:
        head = of_spec(spec)
        head_losses, head_weights = head.head_losses(spec, label_space)
        weight = float(spec.weight)
        if not (weight >= 0.0 and weight < float("inf")):
            raise ValueError(f"head {spec.name!r}: the loss weight must be finite and >= 0, "
                             f"got {weight}")
        if weighting is None:
            head_weights = {output: value * weight for output, value in head_weights.items()}
        elif weight != 1.0:
            raise ValueError(f"head {spec.name!r}: weight {weight} with learned loss "
                             "weights; leave it at 1 (the weights are learned)")
        else:
            head_losses = loss_weighting.weighted(head_losses, weighting, spec.name)
        losses.update(head_losses)
        weights.update(head_weights)
    return losses, weights


def of_spec(spec) -> Head:
    """The head of one resolved ``heads:`` entry (tfdldl.experiment.HeadConfig).

    Raises:
      ValueError: an unknown kind (the message lists the known ones).
    """
    if spec.kind == CategoricalHead.kind:
        return heads_categorical.of_spec(spec)
    if spec.kind not in HEADS:
        raise ValueError(f"unknown head kind {spec.kind!r}; choose one of "
                         f"{', '.join(head_kinds.KINDS_ALL)}")
    return HEADS[spec.kind]


def of_outputs(output_names) -> Head:
    """The head whose outputs a model has (``model.output_names``): one of :data:`HEADS`,
    or a :class:`HeadSet` when the model also has categorical heads' outputs
    (``<name>_probability``, each taken to read the record feature ``<name>``; use
    :func:`of_model` for the attributes a model was built with).

    Raises:
      ValueError: no label head (plus categorical heads) produces exactly these outputs
        (not a tfdldl.models model).
    """
    names = set(output_names)
    auxiliary = heads_categorical.of_output_names(sorted(names))
    rest = names - {head.probability for head in auxiliary}
    for head in HEADS.values():
        if rest == set(head.outputs):
            return HeadSet(head, auxiliary) if auxiliary else head
    raise ValueError(f"no tfdldl head has the outputs {sorted(names)}; the label heads have "
                     + "; ".join(f"{head.kind}: {list(head.outputs)}" for head in HEADS.values())
                     + ", each beside any <name>_probability outputs of categorical heads. "
                     "Build the model with tfdldl.models.build_model")


def of_model(model) -> Head:
    """The heads of a tfdldl model: :func:`of_outputs`, its categorical heads with the class
    names and record attributes they were built with.

    Raises:
      ValueError: not a tfdldl.models model (see :func:`of_outputs`).
    """
    head = of_outputs(model.output_names)
    categorical = heads_categorical.of_model(model)
    return HeadSet(getattr(head, "primary", head), categorical) if categorical else head


def check_outputs(outputs: Outputs) -> None:
    """Raise ValueError unless the heads can make targets for every output named."""
    if isinstance(outputs, Head):
        return
    made = {name for head in _heads_within(outputs) for name in head.outputs}
    missing = [name for name in outputs if name not in made]
    if missing:
        raise ValueError(f"no target can be made for model output(s) {missing}; the heads "
                         "make targets for " + "; ".join(
                             f"{head.kind}: {list(head.outputs)}" for head in HEADS.values())
                         + "; and <name>_probability from the record feature <name>")


def record_fields(outputs: Outputs) -> tuple[str, ...]:
    """The record features (tfdldl.example_schema keys) that :func:`make_targets` reads."""
    return tuple(dict.fromkeys(field for head in _heads_within(outputs)
                               for field in head.record_fields))


def make_targets(outputs: Outputs, record: Mapping[str, Any], label_space: LabelSpace) -> dict:
    """The training targets for the model outputs ``outputs``, made by their heads.

    Args:
      outputs: model output names: those of one head, or of several (a test may ask for
        every target at once); or a model's heads (:func:`of_model`).
      record: a batch of records' features keyed by tfdldl.example_schema names, at least
        :func:`record_fields`; NumPy arrays or tf.Tensors.
      label_space: the grid the records were built on.
    Returns:
      {output name: target}, the same kind of arrays as ``record``'s.
    Raises:
      ValueError: an output for which no head makes a target.
    """
    check_outputs(outputs)
    made: dict = {}
    for head in _heads_within(outputs):
        made.update({name: target for name, target in head.targets(record, label_space).items()
                     if name not in made})
    return made


def _heads_within(outputs: Outputs) -> list[Head]:
    """The heads of ``outputs``: a model's heads themselves, or, for output names, the
    label heads all of whose outputs are among them and their categorical heads."""
    if isinstance(outputs, Head):
        return list(getattr(outputs, "members", (outputs,)))
    names = set(outputs)
    return ([head for head in HEADS.values() if set(head.outputs) <= names]
            + heads_categorical.of_output_names(list(outputs)))


def flip_average(plain: Mapping[str, Any], mirrored: Mapping[str, Any], grid) -> dict:
    """The paper's test protocol on two :meth:`Head.summarise` results (a face, its mirror).

    Every output but ``stddev`` is averaged; ``stddev`` is recomputed from the averaged
    distribution (NaN for a head without one). ``keras.ops`` only, as summarise.
    """
    averaged = {key: ops.mean(ops.stack([plain[key], mirrored[key]]), axis=0)
                for key in plain if key != STDDEV}
    if DISTRIBUTION in averaged:
        averaged[STDDEV] = dldl_layers.distribution_stddev(averaged[DISTRIBUTION], grid)
    else:
        averaged[STDDEV] = ops.full(ops.shape(averaged[VALUE]), float("nan"))
    return averaged
