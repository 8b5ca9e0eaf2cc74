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

The kinds (:data:`KINDS_ALL`):

- the label heads of the paper's Table 3 (tfdldl.heads_label), one per model, predicting
  the record's label (the experiment's task): "distribution" (dldl_v2, dldl, er, dex),
  "regression" (mr_l1, mr_l2), "ranking" (ranking); serving outputs ``value`` [N],
  ``stddev`` [N] and (but regression) ``distribution`` [N, K];
- "gender" (tfdldl.heads_categorical, at most one, beside a label head):
  ``gender_probability`` [N, C], loss masked_cross_entropy.

This module is the registry: the heads by kind and loss (:data:`LOSS_NAMES`,
:func:`for_loss`; their names come from the Keras-free :mod:`tfdldl.head_kinds`, which a
config is validated against), and the functions that find a model's heads from its
outputs. Adding a head: its names in tfdldl.head_kinds, its class (layers, losses, targets,
summary), its entry in :data:`KINDS_ALL` / :data:`AUXILIARY`, its switch in tfdldl.models,
a config and tests.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from keras import ops

from tfdldl import layers as dldl_layers
from tfdldl import loss_weighting
from tfdldl.heads_categorical import GenderHead, HeadSet, class_names
from tfdldl.heads_label import (LOGITS_LAYER, DistributionHead, Head, RankingHead,
                                RegressionHead, check_loss_settings,
                                distribution_from_ranking)
from tfdldl.label_space import LabelSpace
# The output names (the serving contract) live in a Keras-free module; heads.VALUE etc.
# stay the names the rest of the package uses.
from tfdldl.output_names import DISTRIBUTION, GENDER_PROBABILITY, RANKING, STDDEV, VALUE

__all__ = ["LOGITS_LAYER", "DISTRIBUTION", "GENDER_PROBABILITY", "RANKING", "STDDEV", "VALUE",
           "Head", "DistributionHead", "RegressionHead", "RankingHead", "GenderHead",
           "HeadSet", "class_names", "distribution_from_ranking"]

GENDER = GenderHead()
# Heads that sit beside a primary head; their outputs are never a model's only outputs.
AUXILIARY: tuple[Head, ...] = (GENDER,)

HEADS: dict[str, Head] = {head.kind: head
                          for head in (DistributionHead(), RegressionHead(), RankingHead())}
KINDS = tuple(HEADS)
# The one list of training losses (validated by tfdldl.experiment), each with its head.
HEAD_OF_LOSS = {name: head.kind for head in HEADS.values() for name in head.loss_names}
LOSS_NAMES = tuple(HEAD_OF_LOSS)
_ALL: tuple[Head, ...] = (*HEADS.values(), *AUXILIARY)
# Every kind a config's heads[i].kind may name.
KINDS_ALL: dict[str, Head] = {head.kind: head for head in _ALL}


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
    if name not in HEAD_OF_LOSS:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    return HEADS[HEAD_OF_LOSS[name]]


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
        name, loss, weight, lam, kl_normalization, names), one label head and optional
        auxiliary heads.
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
        head = KINDS_ALL.get(spec.kind)
        if head is None:
            raise ValueError(f"unknown head kind {spec.kind!r}; choose one of "
                             f"{', '.join(KINDS_ALL)}")
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


def of_outputs(output_names) -> Head:
    """The head whose outputs a model has (``model.output_names``): one of :data:`HEADS`,
    or a :class:`HeadSet` when the model also has auxiliary heads' outputs.

    Raises:
      ValueError: no head (plus auxiliary heads) produces exactly these outputs (not a
        tfdldl.models model).
    """
    names = set(output_names)
    auxiliary = [head for head in AUXILIARY if set(head.outputs) <= names]
    rest = names - {name for head in auxiliary for name in head.outputs}
    for head in HEADS.values():
        if rest == set(head.outputs):
            return HeadSet(head, auxiliary) if auxiliary else head
    raise ValueError(f"no tfdldl head has the outputs {sorted(names)}; the heads have "
                     + "; ".join(f"{head.kind}: {list(head.outputs)}" for head in _ALL)
                     + ". Build the model with tfdldl.models.build_model")


def check_outputs(output_names) -> None:
    """Raise ValueError unless the heads can make targets for every output named."""
    made = {name for head in _heads_within(output_names) for name in head.outputs}
    missing = [name for name in output_names if name not in made]
    if missing:
        raise ValueError(f"no target can be made for model output(s) {missing}; the heads "
                         "make targets for " + "; ".join(
                             f"{head.kind}: {list(head.outputs)}" for head in _ALL))


def record_fields(output_names) -> tuple[str, ...]:
    """The record features (tfdldl.example_schema keys) that :func:`make_targets` reads."""
    return tuple(dict.fromkeys(field for head in _heads_within(output_names)
                               for field in head.record_fields))


def make_targets(output_names, record: Mapping[str, Any], label_space: LabelSpace) -> dict:
    """The training targets for the model outputs ``output_names``, made by their heads.

    Args:
      output_names: model output names: those of one head, or of several (a test may ask
        for every target at once).
      record: a batch of records' features keyed by tfdldl.example_schema names, at least
        :func:`record_fields`; NumPy arrays or tf.Tensors.
      label_space: the grid the records were built on.
    Returns:
      {output name: target}, the same kind of arrays as ``record``'s.
    Raises:
      ValueError: an output for which no head makes a target.
    """
    check_outputs(output_names)
    made: dict = {}
    for head in _heads_within(output_names):
        made.update({name: target for name, target in head.targets(record, label_space).items()
                     if name not in made})
    return made


def _heads_within(output_names) -> list[Head]:
    """The heads all of whose outputs are among ``output_names``."""
    names = set(output_names)
    return [head for head in _ALL if set(head.outputs) <= names]


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
