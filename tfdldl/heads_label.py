"""The label heads of the paper's Table 3: distribution, regression, ranking (tfdldl.heads).

Each predicts the record's label (the experiment's task: age in years, or a rating) from the
pooled features. K = the label grid's size, N = batch:

============  ==========================  ===================================  ==========
kind          model outputs               losses (tfdldl.losses)               paper
============  ==========================  ===================================  ==========
distribution  distribution [N, K], value  dldl_v2, dldl, er, dex               DLDL(-v2),
                                                                               ER, DEX
regression    value [N]                   mr_l1, mr_l2                         MR
ranking       ranking [N, K-1], value     ranking                              Ranking
============  ==========================  ===================================  ==========

Serving outputs of every label head (the contract of tfdldl.export and tfdldl.inference):
``value`` [N] (label units), ``stddev`` [N] (the spread of the predicted distribution,
label units; NaN for a head without one) and ``distribution`` [N, K] (absent for the
regression head). A ranking head reports the distribution its K-1 binary outputs imply.
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
import numpy as np
from keras import ops

from tfdldl import example_schema as schema
from tfdldl import head_kinds
from tfdldl import layers as dldl_layers
from tfdldl import losses as dldl_losses
from tfdldl.label_space import LabelSpace
from tfdldl.output_names import DISTRIBUTION, RANKING, STDDEV, VALUE

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
      attribute: what it predicts, for a config's ``heads[i].attribute`` (None: the
        record's label, named by the experiment's task).
    """

    kind: str = ""
    outputs: tuple[str, ...] = ()
    loss_names: tuple[str, ...] = ()
    serving_outputs: tuple[str, ...] = (VALUE, STDDEV, DISTRIBUTION)
    record_fields: tuple[str, ...] = (schema.LABEL,)
    # What the head predicts (a record feature); None: the record's label, i.e. the task.
    attribute: str | None = None

    def build(self, features, label_space: LabelSpace) -> dict:
        """Keras layers on pooled features [N, C] -> {output name: tensor} (see the table)."""
        raise NotImplementedError

    def build_loss(self, name: str, label_space: LabelSpace, lam: float,
                   kl_normalization: str) -> tuple[dict, dict]:
        """(losses, loss_weights) keyed by output name, for ``model.compile``."""
        raise NotImplementedError

    def head_losses(self, spec, label_space: LabelSpace) -> tuple[dict, dict]:
        """(losses, loss_weights within the head) keyed by output name, for one resolved
        ``heads:`` entry (tfdldl.experiment.HeadConfig: loss, lam, kl_normalization, names);
        the head's own weight is applied by tfdldl.heads.compile_losses."""
        if spec.loss not in self.loss_names:
            raise ValueError(f"loss {spec.loss!r} does not train a {self.kind} head; choose "
                             f"one of {', '.join(self.loss_names)}")
        return self.build_loss(spec.loss, label_space,
                               *check_loss_settings(spec.lam, spec.kl_normalization))

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

    kind = head_kinds.DISTRIBUTION.name
    outputs = (DISTRIBUTION, VALUE)
    loss_names = head_kinds.DISTRIBUTION.loss_names

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

    kind = head_kinds.REGRESSION.name
    outputs = (VALUE,)
    loss_names = head_kinds.REGRESSION.loss_names
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

    kind = head_kinds.RANKING.name
    outputs = (RANKING, VALUE)
    loss_names = head_kinds.RANKING.loss_names

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
        return {RANKING: as_float32(above), VALUE: label}

    def summarise(self, outputs, grid):
        return _with_distribution(outputs[VALUE], distribution_from_ranking(outputs[RANKING]),
                                  grid)


def check_loss_settings(lam, kl_normalization: str) -> tuple[float, str]:
    """(λ, kl_normalization) once checked.

    Raises:
      ValueError: an unknown normalisation, or a negative or non-finite λ.
    """
    if kl_normalization not in dldl_losses.KL_NORMALIZATIONS:
        raise ValueError(f"unknown kl_normalization {kl_normalization!r}; choose 'sum' "
                         "(sum over classes, Keras style) or 'mean' (mean over N*K, the "
                         "original Torch code)")
    lam = float(lam)
    if not (lam >= 0.0 and lam < float("inf")):
        raise ValueError(f"lam (the weight of the expectation L1) must be finite and >= 0, "
                         f"got {lam}")
    return lam, kl_normalization


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


def as_float32(flags):
    """A boolean or integer NumPy array or tf.Tensor as float32 of the same kind (targets stay on the
    side of the pipeline that made them: NumPy for the host pipeline, TF for tf.data)."""
    if isinstance(flags, np.ndarray):
        return flags.astype(np.float32)
    import tensorflow as tf

    return tf.cast(flags, tf.float32)
