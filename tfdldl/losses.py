"""DLDL-v2's loss and the paper's baselines (``keras.ops`` only); tfdldl.heads picks them by name.

=========  =================  ==============================================  ==========
name       head               loss per output                                  paper
=========  =================  ==============================================  ==========
dldl_v2    distribution       KL(p ‖ p̂) on "distribution" + λ·|ŷ - y| on "value"  DLDL-v2
dldl       distribution       KL(p ‖ p̂) on "distribution"                        DLDL
er         distribution       |ŷ - y| on "value"                                 ER
dex        distribution       -log p̂[argmax p] on "distribution"                 DEX
mr_l1      regression         |ŷ - y| on "value"                                 MR ℓ1
mr_l2      regression         (ŷ - y)² on "value"                                MR ℓ2
ranking    ranking            binary cross-entropy over the K-1 "ranking" outputs  Ranking
=========  =================  ==============================================  ==========

A categorical head (tfdldl.heads.CategoricalHead) trains with :class:`MaskedCrossEntropy`.

KL normalisation (``kl_normalization``), the one convention that changes the balance
between KL and λ·L1:

- ``"sum"``: KL summed over the K classes, averaged over the batch (Keras' own
  ``KLDivergence``); KL weighs about K times more than in the original code.
- ``"mean"``: KL averaged over all N·K elements, as the original Torch code
  (``nn.DistKLDivCriterion`` with size averaging) does, while L1 is averaged over N.

Every loss returns per-sample values and leaves the batch reduction to
``keras.losses.Loss`` ("sum_over_batch_size"), which Keras scales correctly under
TensorFlow distribution strategies (MirroredStrategy).
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "tfdldl"
# Probabilities are clipped to [EPSILON, 1] before a log: no -inf, no NaN gradient.
EPSILON = 1e-7
KL_NORMALIZATIONS = ("sum", "mean")


def _check_width(tensor, expected: int, what: str) -> None:
    """Fail with a readable message when the last axis is known and is not ``expected``."""
    width = tensor.shape[-1]
    if width is not None and int(width) != expected:
        raise ValueError(f"{what} has {int(width)} entries per sample but the label space has "
                         f"{expected}; the model, the targets and the loss must share one label "
                         "space")


class _ClassLoss(keras.losses.Loss):
    """A loss over K (or K-1) values per sample; checks the width, holds ``num_classes``."""

    def __init__(self, num_classes: int, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class LabelDistributionKL(_ClassLoss):
    """KL(p ‖ p̂) = Σ_k p_k (log p_k - log p̂_k) between target and predicted distributions.

    y_true: float [N, K] target distributions (rows sum to 1). y_pred: float [N, K] softmax
    outputs. Per-sample value: the sum over K ("sum") or the mean over K ("mean"); the
    batch mean is Keras' reduction, so "mean" equals the mean over all N·K elements.
    """

    def __init__(self, num_classes: int, kl_normalization: str = "sum", name="kl", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)
        if kl_normalization not in KL_NORMALIZATIONS:
            raise ValueError(f"unknown kl_normalization {kl_normalization!r}; choose one of "
                             f"{KL_NORMALIZATIONS}")
        self.kl_normalization = kl_normalization

    def call(self, y_true, y_pred):
        _check_width(y_pred, self.num_classes, "the predicted distribution")
        _check_width(y_true, self.num_classes, "the target distribution")
        p = ops.cast(y_true, "float32")
        log_ratio = ops.log(ops.clip(p, EPSILON, 1.0)) - ops.log(
            ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0))
        terms = p * log_ratio  # 0 where p = 0
        if self.kl_normalization == "mean":
            return ops.mean(terms, axis=-1)
        return ops.sum(terms, axis=-1)

    def get_config(self):
        config = super().get_config()
        config["kl_normalization"] = self.kl_normalization
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ArgmaxCrossEntropy(_ClassLoss):
    """DEX: cross-entropy -log p̂_c with c = argmax_k of the target distribution.

    y_true: float [N, K] target distributions (a one-hot works too). y_pred: float [N, K]
    softmax outputs. Per-sample value: -log p̂_c (p̂ clipped at 1e-7).
    """

    def __init__(self, num_classes: int, name="dex_cross_entropy", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def call(self, y_true, y_pred):
        _check_width(y_pred, self.num_classes, "the predicted distribution")
        _check_width(y_true, self.num_classes, "the target distribution")
        one_hot = ops.one_hot(ops.argmax(y_true, axis=-1), self.num_classes, dtype="float32")
        log_q = ops.log(ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0))
        return -ops.sum(one_hot * log_q, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RankingCrossEntropy(_ClassLoss):
    """Ranking: binary cross-entropy of the K-1 "y > l_k" classifiers, mean over the K-1.

    y_true: float [N, K-1] targets in {0, 1} (``LabelSpace.ranking``). y_pred: float
    [N, K-1] sigmoid outputs (clipped to [1e-7, 1 - 1e-7]). Per-sample value: the mean
    binary cross-entropy over the K-1 classifiers.
    """

    def __init__(self, num_classes: int, name="ranking_cross_entropy", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def call(self, y_true, y_pred):
        _check_width(y_pred, self.num_classes - 1, "the ranking output")
        _check_width(y_true, self.num_classes - 1, "the ranking target")
        t = ops.cast(y_true, "float32")
        q = ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0 - EPSILON)
        return -ops.mean(t * ops.log(q) + (1.0 - t) * ops.log(1.0 - q), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedCrossEntropy(_ClassLoss):
    """Cross-entropy -log p̂_c of a class code c, ignoring samples whose code is unknown.

    y_true: float or int [N] (or [N, 1]) class codes 0..C-1, negative = unknown (the
    records' code -1). y_pred: float [N, C] softmax outputs (clipped at 1e-7).
    Per-sample value: -log p̂_c x N / (number of known codes in the batch), 0 for unknown
    codes; so Keras' batch mean is the mean over the known samples (0 when none is known).
    """

    def __init__(self, num_classes: int, name="masked_cross_entropy", **kwargs):
        super().__init__(num_classes, name=name, **kwargs)

    def call(self, y_true, y_pred):
        _check_width(y_pred, self.num_classes, "the predicted class probabilities")
        codes = _flat(y_true)
        known = ops.cast(ops.greater_equal(codes, 0.0), "float32")
        one_hot = ops.one_hot(ops.cast(codes * known, "int32"), self.num_classes,
                              dtype="float32")
        log_q = ops.log(ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0))
        per_sample = -ops.sum(one_hot * log_q, axis=-1) * known
        count = ops.cast(ops.shape(codes)[0], "float32")
        return per_sample * count / ops.maximum(ops.sum(known), 1.0)


def _flat(y):
    """float32 [N] from a per-sample scalar given as [N] or [N, 1]."""
    return ops.reshape(ops.cast(y, "float32"), (-1,))


@keras.saving.register_keras_serializable(package=PACKAGE)
class AbsoluteError(keras.losses.Loss):
    """|ŷ - y| per sample, label units: ER and DLDL-v2's expectation term, MR ℓ1.

    y_true, y_pred: float [N] (or [N, 1]). Per-sample value: float32 [N].
    """

    def __init__(self, name="absolute_error", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return ops.abs(_flat(y_pred) - _flat(y_true))


@keras.saving.register_keras_serializable(package=PACKAGE)
class SquaredError(keras.losses.Loss):
    """(ŷ - y)² per sample, squared label units: MR ℓ2.

    y_true, y_pred: float [N] (or [N, 1]). Per-sample value: float32 [N].
    """

    def __init__(self, name="squared_error", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return ops.square(_flat(y_pred) - _flat(y_true))
