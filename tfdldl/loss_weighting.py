"""Learned loss weights between heads: homoscedastic uncertainty weighting (``keras.ops`` only).

Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018. Each head i has a learned log-variance s_i = log σ_i²
and the total loss is

    L = Σ_i exp(-s_i) · L_i + s_i

with L_i the head's own loss (for the distribution head with dldl_v2: KL + λ·|ŷ - y|, λ
staying a fixed ratio inside the head). With s = log σ² this is exactly twice Kendall et
al.'s term for a regression (Gaussian) likelihood, L/(2σ²) + log σ (their eqs. 7 and 10;
Section 3.2 trains s = log σ² for numerical stability), and we use it for every head, the
age regression and the gender classification alike. For a classification likelihood the
paper's term is L/σ² + log σ = exp(-s)·L + s/2, whose optimum s* = log 2L is a weight half
as large as ours (s* = log L); many implementations use one form for all heads, as
here. At s_i = 0 every head starts from weight 1, the fixed weighting's default.
exp(-s_i) is the head's effective weight; it is logged per epoch (:class:`LossWeightLog`,
``loss_weight_<head>`` in the CSV log).

Where the variables live: :class:`LossWeights`, a layer of the model (an identity on the
pooled features; the serving outputs do not change), so the optimizer trains them with
the network under every Keras backend and tf.distribute strategy, they are saved in the
model's weights, backups and .keras file, and resumed runs continue from them. The losses
(:class:`UncertaintyWeighted`, one around each output's loss) read them at each step.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence

import keras
import numpy as np
from keras import ops

PACKAGE = "tfdldl"
# The model's LossWeights layer.
LAYER_NAME = "loss_weighting"
# The CSV / TensorBoard log key of a head's learned weight exp(-s_i).
LOG_KEY = "loss_weight_{}"

log = logging.getLogger("tfdldl.train")


@keras.saving.register_keras_serializable(package=PACKAGE)
class LossWeights(keras.layers.Layer):
    """Holds the learned log-variances s_i (float32 [H], one per head, initially 0).

    Calling it returns its input unchanged (it sits on the pooled features so that it is
    part of the model); :class:`UncertaintyWeighted` losses read :attr:`log_variance`.

    Args:
      heads: the heads' names, in order (at least one, distinct).
    Raises:
      ValueError: no heads, or a repeated name.
    """

    def __init__(self, heads: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        heads = tuple(str(head) for head in heads)
        if not heads or len(set(heads)) != len(heads):
            raise ValueError(f"LossWeights needs at least one head and distinct names, got "
                             f"{list(heads)}")
        self.heads = heads
        self.log_variance = self.add_weight(shape=(len(heads),), initializer="zeros",
                                            trainable=True, name="log_variance")

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def index(self, head: str) -> int:
        """The position of ``head`` in :attr:`log_variance` (ValueError naming the heads)."""
        if head not in self.heads:
            raise ValueError(f"no learned loss weight for head {head!r}; the model has "
                             f"{list(self.heads)}")
        return self.heads.index(head)

    def weights_by_head(self) -> dict[str, float]:
        """{head: exp(-s_i)}, the current effective weight of each head's loss."""
        values = np.exp(-np.asarray(ops.convert_to_numpy(self.log_variance), np.float64))
        return {head: float(value) for head, value in zip(self.heads, values)}

    def get_config(self):
        return {**super().get_config(), "heads": list(self.heads)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class UncertaintyWeighted(keras.losses.Loss):
    """exp(-s) · loss(y, ŷ) per sample, plus s when ``add_log_variance`` (once per head).

    s is head ``head``'s entry of a :class:`LossWeights` layer once :meth:`bind` has been
    called (by :func:`weighted`); a loss read back from a ``.keras`` file is not bound and
    uses ``log_variance``, the value s had when the file was written (so a reloaded model
    evaluates to the same loss; to keep learning s, build the compiled model with
    tfdldl.model_setup). Per-sample values and batch reduction as ``loss``'s.

    Args:
      loss: the head's loss for one output (a keras.losses.Loss or its serialised config).
      head: the head's name in the LossWeights layer.
      add_log_variance: add the regulariser s (True for exactly one output of the head).
      log_variance: s while unbound.
    """

    def __init__(self, loss, head: str, add_log_variance: bool, log_variance: float = 0.0,
                 name: Optional[str] = None, **kwargs):
        if isinstance(loss, Mapping):
            loss = keras.saving.deserialize_keras_object(loss)
        super().__init__(name=name or f"{loss.name}_uncertainty_weighted", **kwargs)
        self.loss, self.head = loss, str(head)
        self.add_log_variance = bool(add_log_variance)
        self.fixed_log_variance = float(log_variance)
        self.layer: Optional[LossWeights] = None
        self.position = -1

    def bind(self, layer: LossWeights) -> "UncertaintyWeighted":
        """Read s from ``layer`` from now on (ValueError if it has no such head)."""
        self.layer, self.position = layer, layer.index(self.head)
        return self

    def log_variance(self):
        """s: the bound layer's current value, or the fixed one."""
        if self.layer is None:
            return ops.convert_to_tensor(self.fixed_log_variance, "float32")
        return self.layer.log_variance[self.position]

    def call(self, y_true, y_pred):
        s = self.log_variance()
        weighted = ops.exp(-s) * self.loss.call(y_true, y_pred)
        return weighted + s if self.add_log_variance else weighted

    def get_config(self):
        config = super().get_config()
        s = self.fixed_log_variance if self.layer is None else float(
            ops.convert_to_numpy(self.log_variance()))
        config.update(loss=keras.saving.serialize_keras_object(self.loss), head=self.head,
                      add_log_variance=self.add_log_variance, log_variance=s)
        return config


def weighted(losses: Mapping[str, keras.losses.Loss], layer: LossWeights,
             head: str) -> dict[str, UncertaintyWeighted]:
    """One head's losses {output: loss}, each weighted by the head's learned exp(-s); the
    first output's loss also adds s, so the head contributes exp(-s)·L + s in total."""
    return {output: UncertaintyWeighted(loss, head, add_log_variance=i == 0).bind(layer)
            for i, (output, loss) in enumerate(losses.items())}


def layer_of(model) -> Optional[LossWeights]:
    """The model's LossWeights layer, or None (fixed weighting)."""
    for layer in model.layers:
        if isinstance(layer, LossWeights):
            return layer
    return None


class LossWeightLog(keras.callbacks.Callback):
    """Adds each head's learned weight exp(-s_i) to the epoch's logs (``loss_weight_<head>``,
    so the CSV log and TensorBoard show it) and logs it; nothing under fixed weighting."""

    def on_epoch_end(self, epoch, logs=None):
        layer = layer_of(self.model)
        if layer is None:
            return
        by_head = layer.weights_by_head()
        if logs is not None:
            logs.update({LOG_KEY.format(head): value for head, value in by_head.items()})
        log.info("epoch %d: learned loss weights %s", epoch + 1,
                 ", ".join(f"{head} {value:.4g}" for head, value in by_head.items()))
