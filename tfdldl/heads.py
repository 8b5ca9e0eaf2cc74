"""Heads: each kind of model output, owned in one place from the record to the serving outputs.

A head owns, for its output:

- its Keras layers on the pooled features (:meth:`Head.build`) and the model output names
  they produce (:attr:`Head.outputs`);
- the training losses that fit it, by name, with their weights (:meth:`Head.build_loss`);
- its training targets from the record features it names (:attr:`Head.record_fields`,
  tfdldl.example_schema keys), as NumPy arrays (host pipeline) or TensorFlow tensors
  (tf.data) (:meth:`Head.targets`);
- its post-processing (:meth:`Head.summarise`), written once in ``keras.ops``: the
  SavedModel's signatures, the ``.keras`` predictor and flip averaging (:func:`flip_average`)
  all use it, so every way of running a model returns the same keys and values.

The three heads of the paper's Table 3 (K = the label grid's size, N = batch):

============  ==========================  ===================================  ==========
kind          model outputs               losses (tfdldl.losses)               paper
============  ==========================  ===================================  ==========
distribution  distribution [N, K], value  dldl_v2, dldl, er, dex               DLDL(-v2),
                                                                               ER, DEX
regression    value [N]                   mr_l1, mr_l2                         MR
ranking       ranking [N, K-1], value     ranking                              Ranking
============  ==========================  ===================================  ==========

Serving outputs of every head (the contract of tfdldl.export and tfdldl.inference):
``value`` [N] (label units), ``stddev`` [N] (the spread of the predicted distribution,
label units; NaN for a head without one) and ``distribution`` [N, K] (absent for the
regression head). A ranking head reports the distribution its K-1 binary outputs imply.

An auxiliary head sits beside one of those on the same trunk (:data:`AUXILIARY`):
:class:`GenderHead` adds ``gender_probability`` [N, C] (softmax over the C gender names the
config gives; UTKFace codes 0 = male, 1 = female), trained with a cross-entropy masked
where the record's gender is unknown (-1). A model with auxiliary heads is summarised by a
:class:`HeadSet` (:func:`of_outputs`), whose serving outputs are the union of its heads'.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import numpy as np
from keras import ops

from tfdldl import example_schema as schema
from tfdldl import layers as dldl_layers
from tfdldl import losses as dldl_losses
from tfdldl.label_space import LabelSpace
# The output names (the serving contract) live in a Keras-free module; heads.VALUE etc.
# stay the names the rest of the package uses.
from tfdldl.output_names import DISTRIBUTION, GENDER_PROBABILITY, RANKING, STDDEV, VALUE

# The Dense layer giving the distribution head's logits (tfdldl.tflite_export reads it).
LOGITS_LAYER = "logits"


class Head:
    """One kind of output; subclasses define the class attributes and methods below.

    Attributes:
      kind: the head's name ("distribution", "regression", "ranking").
      outputs: the model output names its layers produce.
      loss_names: the losses (tfdldl.losses) that train it.
      serving_outputs: the keys of :meth:`summarise` (the SavedModel's outputs, less
        ``error``).
      record_fields: the record features (tfdldl.example_schema keys) its targets are
        made from.
    """

    kind: str = ""
    outputs: tuple[str, ...] = ()
    loss_names: tuple[str, ...] = ()
    serving_outputs: tuple[str, ...] = (VALUE, STDDEV, DISTRIBUTION)
    record_fields: tuple[str, ...] = (schema.LABEL,)

    def build(self, features, label_space: LabelSpace) -> dict:
        """Keras layers on pooled features [N, C] -> {output name: tensor} (see the table)."""
        raise NotImplementedError

    def build_loss(self, name: str, label_space: LabelSpace, lam: float,
                   kl_normalization: str) -> tuple[dict, dict]:
        """(losses, loss_weights) keyed by output name, for ``model.compile``."""
        raise NotImplementedError

    def targets(self, record: Mapping[str, Any], label_space: LabelSpace) -> dict:
        """The training targets of a batch, keyed by output name.

        Args:
          record: a batch of records' features, keyed by tfdldl.example_schema names, at
            least :attr:`record_fields` (e.g. "label" float32 [N], "distribution" float32
            [N, K]); NumPy arrays (host pipeline) or tf.Tensors (tf.data).
          label_space: the grid the records were built on.
        """
        return {VALUE: record[schema.LABEL]}

    def summarise(self, outputs: Mapping[str, Any], grid) -> dict:
        """Model outputs -> serving outputs {value [N], stddev [N], distribution [N, K]}.

        ``keras.ops`` only: it runs in the export graph and on NumPy outputs alike.
        """
        value = ops.reshape(ops.cast(outputs[VALUE], "float32"), (-1,))
        return {VALUE: value, STDDEV: ops.full(ops.shape(value), float("nan"))}


class DistributionHead(Head):
    """Dense(K) -> softmax p̂ -> expectation ŷ = Σ_k p̂_k l_k (DLDL-v2, DLDL, ER, DEX)."""

    kind = "distribution"
    outputs = (DISTRIBUTION, VALUE)
    loss_names = ("dldl_v2", "dldl", "er", "dex")

    def build(self, features, label_space: LabelSpace) -> dict:
        logits = keras.layers.Dense(label_space.num_classes, name=LOGITS_LAYER)(features)
        distribution = keras.layers.Activation("softmax", dtype="float32",
                                               name=DISTRIBUTION)(logits)
        value = dldl_layers.Expectation.from_label_space(label_space, name=VALUE)(distribution)
        return {DISTRIBUTION: distribution, VALUE: value}

    def build_loss(self, name, label_space, lam, kl_normalization):
        k = label_space.num_classes
        if name == "dldl_v2":
            return ({DISTRIBUTION: dldl_losses.LabelDistributionKL(k, kl_normalization),
                     VALUE: dldl_losses.AbsoluteError(name="expectation_l1")},
                    {DISTRIBUTION: 1.0, VALUE: lam})
        if name == "dldl":
            return ({DISTRIBUTION: dldl_losses.LabelDistributionKL(k, kl_normalization)},
                    {DISTRIBUTION: 1.0})
        if name == "dex":
            return {DISTRIBUTION: dldl_losses.ArgmaxCrossEntropy(k)}, {DISTRIBUTION: 1.0}
        return {VALUE: dldl_losses.AbsoluteError(name="er_l1")}, {VALUE: 1.0}

    record_fields = (schema.LABEL, schema.DISTRIBUTION)

    def targets(self, record, label_space):
        return {DISTRIBUTION: record[schema.DISTRIBUTION], VALUE: record[schema.LABEL]}

    def summarise(self, outputs, grid):
        return _with_distribution(outputs[VALUE], outputs[DISTRIBUTION], grid)


class RegressionHead(Head):
    """Dense(1), rescaled onto the label range (MR ℓ1, ℓ2); predicts no distribution."""

    kind = "regression"
    outputs = (VALUE,)
    loss_names = ("mr_l1", "mr_l2")
    serving_outputs = (VALUE, STDDEV)

    def build(self, features, label_space: LabelSpace) -> dict:
        raw = keras.layers.Dense(1, name="regression")(features)
        return {VALUE: dldl_layers.RegressionValue.from_label_space(label_space,
                                                                    name=VALUE)(raw)}

    def build_loss(self, name, label_space, lam, kl_normalization):
        if name == "mr_l2":
            return {VALUE: dldl_losses.SquaredError()}, {VALUE: 1.0}
        return {VALUE: dldl_losses.AbsoluteError(name="mr_l1_l1")}, {VALUE: 1.0}


class RankingHead(Head):
    """K-1 sigmoid "y > l_k" classifiers; ŷ = l_0 + Δl · count(P > 0.5) (Ranking)."""

    kind = "ranking"
    outputs = (RANKING, VALUE)
    loss_names = ("ranking",)

    def build(self, features, label_space: LabelSpace) -> dict:
        ranking = keras.layers.Dense(label_space.num_classes - 1, activation="sigmoid",
                                     dtype="float32", name=RANKING)(features)
        value = dldl_layers.RankingCount.from_label_space(label_space, name=VALUE)(ranking)
        return {RANKING: ranking, VALUE: value}

    def build_loss(self, name, label_space, lam, kl_normalization):
        return ({RANKING: dldl_losses.RankingCrossEntropy(label_space.num_classes)},
                {RANKING: 1.0})

    def targets(self, record, label_space):
        label = record[schema.LABEL]
        thresholds = (label_space.grid[:-1] + 0.5 * label_space.step).astype(np.float32)
        above = label[:, None] > thresholds[None, :]
        return {RANKING: _as_float32(above), VALUE: label}

    def summarise(self, outputs, grid):
        return _with_distribution(outputs[VALUE], distribution_from_ranking(outputs[RANKING]),
                                  grid)


class GenderHead(Head):
    """Dense(C) -> softmax over C named classes (:class:`tfdldl.layers.ClassProbabilities`).

    Targets: the record's gender code as float32 [N] (-1 unknown); loss
    :class:`tfdldl.losses.MaskedCrossEntropy`; serving output ``gender_probability`` float32
    [N, C], column c = the probability of name c (record code c).
    """

    kind = "gender"
    outputs = (GENDER_PROBABILITY,)
    serving_outputs = (GENDER_PROBABILITY,)
    record_fields = (schema.GENDER,)

    def build(self, features, names) -> dict:
        """Keras layers on pooled features [N, F] -> {"gender_probability": [N, len(names)]}.

        ``names``: the class names, code order (e.g. ("male", "female")); at least two.
        """
        logits = keras.layers.Dense(len(names), name="gender_logits")(features)
        return {GENDER_PROBABILITY: dldl_layers.ClassProbabilities(
            names, name=GENDER_PROBABILITY)(logits)}

    def build_loss(self, num_classes: int, weight: float) -> tuple[dict, dict]:
        """(losses, loss_weights) for ``model.compile``: the masked cross-entropy x weight.

        Raises:
          ValueError: a negative or non-finite weight.
        """
        weight = float(weight)
        if not (weight >= 0.0 and weight < float("inf")):
            raise ValueError(f"the gender loss weight must be finite and >= 0, got {weight}")
        return ({GENDER_PROBABILITY: dldl_losses.MaskedCrossEntropy(num_classes)},
                {GENDER_PROBABILITY: weight})

    def targets(self, record, label_space):
        return {GENDER_PROBABILITY: _as_float32(record[schema.GENDER])}

    def summarise(self, outputs, grid):
        return {GENDER_PROBABILITY: ops.cast(outputs[GENDER_PROBABILITY], "float32")}


class HeadSet(Head):
    """One of :data:`HEADS` (the primary, which gives ``value``) plus auxiliary heads.

    ``kind`` is the primary's; outputs, serving outputs and record fields are the union of
    the heads'; :meth:`summarise` merges their summaries.
    """

    def __init__(self, primary: Head, auxiliary):
        self.primary, self.auxiliary = primary, tuple(auxiliary)
        members = (primary, *self.auxiliary)
        self.kind = primary.kind
        self.outputs = tuple(name for head in members for name in head.outputs)
        self.serving_outputs = tuple(name for head in members for name in head.serving_outputs)
        self.record_fields = tuple(dict.fromkeys(
            field for head in members for field in head.record_fields))

    def summarise(self, outputs, grid):
        summary = self.primary.summarise(outputs, grid)
        for head in self.auxiliary:
            summary.update(head.summarise(outputs, grid))
        return summary


GENDER = GenderHead()
# Heads that sit beside a primary head; their outputs are never a model's only outputs.
AUXILIARY: tuple[Head, ...] = (GENDER,)


def class_names(model) -> dict[str, list[str]]:
    """{probability output: its class names in column order} of a model, e.g.
    {"gender_probability": ["male", "female"]}; {} when it has no such output."""
    return {layer.name: list(layer.names) for layer in model.layers
            if isinstance(layer, dldl_layers.ClassProbabilities)}


HEADS: dict[str, Head] = {head.kind: head
                          for head in (DistributionHead(), RegressionHead(), RankingHead())}
KINDS = tuple(HEADS)
# The one list of training losses (validated by tfdldl.experiment), each with its head.
HEAD_OF_LOSS = {name: head.kind for head in HEADS.values() for name in head.loss_names}
LOSS_NAMES = tuple(HEAD_OF_LOSS)
_ALL: tuple[Head, ...] = (*HEADS.values(), *AUXILIARY)


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
    head = for_loss(name)
    if kl_normalization not in dldl_losses.KL_NORMALIZATIONS:
        raise ValueError(f"unknown kl_normalization {kl_normalization!r}; choose 'sum' "
                         "(sum over classes, Keras style) or 'mean' (mean over N*K, the "
                         "original Torch code)")
    lam = float(lam)
    if not (lam >= 0.0 and lam < float("inf")):
        raise ValueError(f"lam (the weight of the expectation L1) must be finite and >= 0, "
                         f"got {lam}")
    return head.build_loss(name, label_space, lam, kl_normalization)


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


def distribution_from_ranking(ranking):
    """float32 [N, K-1] P(y > l_k) -> [N, K] P(y = l_k), from the implied CDF.

    Negative masses (non-monotone sigmoid outputs) are clipped to 0 and rows renormalised.
    """
    ranking = ops.cast(ranking, "float32")
    ones = ops.ones_like(ranking[:, :1])
    above = ops.concatenate([ones, ranking, ops.zeros_like(ones)], axis=-1)
    mass = ops.maximum(above[:, :-1] - above[:, 1:], 0.0)
    return mass / ops.maximum(ops.sum(mass, axis=-1, keepdims=True), 1e-12)


def _with_distribution(value, distribution, grid) -> dict:
    return {VALUE: ops.reshape(ops.cast(value, "float32"), (-1,)),
            STDDEV: dldl_layers.distribution_stddev(distribution, grid),
            DISTRIBUTION: ops.cast(distribution, "float32")}


def _as_float32(flags):
    """A boolean or integer NumPy array or tf.Tensor as float32 of the same kind (targets stay on the
    side of the pipeline that made them: NumPy for the host pipeline, TF for tf.data)."""
    if isinstance(flags, np.ndarray):
        return flags.astype(np.float32)
    import tensorflow as tf

    return tf.cast(flags, tf.float32)
