"""Custom Keras layers of the DLDL-v2 networks (``keras.ops`` only: any Keras 3 backend).

- :class:`Expectation`: ŷ = Σ_k p̂_k l_k, the expectation of the predicted distribution.
- :class:`RankingCount`: the ranking baseline's value, ``minimum + step * #(p_k > 0.5)``.
- :class:`RegressionValue`: the MR baseline's value from one Dense unit.
- :class:`HybridPooling`: the official code's "hybrid pooling", a 2x2 max-pool followed by
  an average over the whole remaining map (7x7 at 224 px).
- :class:`ConvBlockAttention`: CBAM channel + spatial attention on a feature map.
- :class:`ClassProbabilities`: a softmax over named classes (a categorical head), the names
  kept in its config.
- :func:`distribution_stddev`: the predicted distribution's standard deviation.

The three value layers have no trainable weights; each holds the label space in its
config, so :func:`tfdldl.models.label_space_of` can read the grid back from a saved model.
"""

from __future__ import annotations

import keras
from keras import ops

from tfdldl.label_space import LabelSpace

PACKAGE = "tfdldl"


def distribution_stddev(distribution, grid):
    """Standard deviation sqrt(Σ_k p_k (l_k - ŷ)²) of predicted distributions.

    Args:
      distribution: float [N, K], rows sum to 1 (a softmax output).
      grid: float [K], the label values l_k (``LabelSpace.grid``).
    Returns:
      float32 [N], label units; never NaN for valid distributions (the variance is clipped
      at 0 against rounding).
    """
    p = ops.cast(distribution, "float32")
    grid = ops.cast(ops.convert_to_tensor(grid), "float32")
    mean = ops.sum(p * grid, axis=-1, keepdims=True)
    variance = ops.sum(p * ops.square(grid - mean), axis=-1)
    return ops.sqrt(ops.maximum(variance, 0.0))


class LabelSpaceLayer(keras.layers.Layer):
    """Base of the layers that map a head's output to a value in label units.

    Holds the label space (``minimum``, ``maximum``, ``step``, ``label_name``) in its config;
    has no weights. Outputs are float32 whatever the compute policy (mixed precision safe).
    """

    def __init__(self, minimum: float, maximum: float, step: float,
                 label_name: str = "label", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.label_space = LabelSpace(float(minimum), float(maximum), float(step), label_name)

    @classmethod
    def from_label_space(cls, label_space: LabelSpace, **kwargs):
        """Construct from a :class:`LabelSpace` (``kwargs`` go to ``keras.layers.Layer``)."""
        return cls(label_space.minimum, label_space.maximum, label_space.step,
                   label_space.name, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update({
            "minimum": self.label_space.minimum,
            "maximum": self.label_space.maximum,
            "step": self.label_space.step,
            "label_name": self.label_space.name,
        })
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class Expectation(LabelSpaceLayer):
    """ŷ = Σ_k p̂_k l_k: the expectation of a distribution over the label grid.

    Input: float [N, K] probabilities (rows sum to 1). Output: float32 [N], label units.
    """

    def call(self, distribution):
        grid = ops.convert_to_tensor(self.label_space.grid)
        return ops.sum(ops.cast(distribution, "float32") * grid, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class RankingCount(LabelSpaceLayer):
    """The ranking baseline's value: ``minimum + step * #{k : P(y > l_k) > 0.5}``.

    Input: float [N, K-1] sigmoid outputs. Output: float32 [N], label units. Not
    differentiable (a count); the ranking loss trains the sigmoid outputs instead.
    """

    def call(self, ranking):
        above = ops.cast(ops.greater(ops.cast(ranking, "float32"), 0.5), "float32")
        return self.label_space.minimum + self.label_space.step * ops.sum(above, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegressionValue(LabelSpaceLayer):
    """The MR baseline's value: ``centre + half_range * r`` for one Dense output r.

    A fixed (non-trainable) affine map, so that the Dense unit works at unit scale
    whatever the label units (ages 0..100, ratings 1..5); the loss still sees label
    units. Input: float [N, 1]. Output: float32 [N].
    """

    def call(self, raw):
        space = self.label_space
        centre = 0.5 * (space.minimum + space.maximum)
        half_range = 0.5 * (space.maximum - space.minimum)
        return centre + half_range * ops.cast(ops.squeeze(raw, axis=-1), "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class HybridPooling(keras.layers.Layer):
    """Hybrid pooling of the official DLDL-v2 code: 2x2 max-pool, then a global average.

    At 224 px the max-pool turns the 14x14 conv5 map into 7x7 and the average covers those
    7x7 cells (the official 7x7 average pool); other input sizes average over whatever
    map remains. Input: [N, H, W, C] with H, W >= 2. Output: [N, C].
    """

    def call(self, features):
        pooled = ops.max_pool(features, pool_size=2, strides=2, padding="valid")
        return ops.mean(pooled, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassProbabilities(keras.layers.Layer):
    """Softmax over named classes; the names travel with the model (its config).

    Input: float [N, C] logits, C = ``len(names)``. Output: float32 [N, C] probabilities,
    column c is the probability of ``names[c]`` (the record code c). ``attribute``: the
    record feature whose codes it predicts (tfdldl.example_schema key, e.g. "group"); None
    (models saved before it was kept) = the head's name, the layer's name less
    "_probability".

    Raises:
      ValueError: fewer than two names, or repeated names.
    """

    def __init__(self, names, attribute=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.names = tuple(str(name) for name in names)
        self.attribute = attribute
        if len(self.names) < 2 or len(set(self.names)) != len(self.names):
            raise ValueError(f"class names must be at least two distinct names, got "
                             f"{list(self.names)}")

    def call(self, logits):
        return ops.softmax(ops.cast(logits, "float32"), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["names"] = list(self.names)
        if self.attribute is not None:
            config["attribute"] = self.attribute
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvBlockAttention(keras.layers.Layer):
    """CBAM (Woo et al., ECCV 2018) channel + spatial attention, in residual form.

    Channel: a = σ(MLP(avgpool F) + MLP(maxpool F)), the MLP shared (C -> C/r ReLU -> C).
    Spatial: m = σ(BN(conv_k×k([mean_c a⊙F, max_c a⊙F]))), a [N, H, W, 1] map in (0, 1)
    (the BatchNorm before the sigmoid is the official CBAM code's SpatialGate).
    Output: (1 + a⊙m) ⊙ F, the "attention residual learning" of Wang et al. (CVPR 2017).
    CBAM sits inside residual blocks, so an identity path always carries F around it; here
    it sits on the trunk's last map with nothing around it, and the plain a⊙m⊙F gated away
    what one head needs and the other does not (measured: a two-head model with it never
    learned an attribute painted into a stripe, which it learns without attention and with
    this form). Placed before pooling.

    Why CBAM and not a re-derivation of the attentional multi-task paper's own module: CBAM
    is fully specified and widely reproduced, costs 2C²/r + C + C/r + 2k² + 4 weights (≈4k for
    TinyAgeNet's 128 channels at r = 8), works at any map size (a 2x2 map at 32 px input
    as well as 7x7 at 224 px), and its spatial map m is the learned "where to look" map
    the paper draws (:meth:`spatial_map`); the channel part lets the map weigh which
    features matter (wrinkles vs. face edges) before deciding where.

    Input: float [N, H, W, C]. Output: the same shape.

    Raises:
      ValueError: reduction < 1, or an even or non-positive kernel_size.
    """

    def __init__(self, reduction: int = 8, kernel_size: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.reduction, self.kernel_size = int(reduction), int(kernel_size)
        if self.reduction < 1:
            raise ValueError(f"attention reduction must be >= 1, got {reduction}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"attention kernel_size must be odd and positive, got {kernel_size}")

    def build(self, input_shape):
        channels = int(input_shape[-1])
        hidden = max(1, channels // self.reduction)
        self.squeeze = keras.layers.Dense(hidden, activation="relu", name="squeeze")
        self.excite = keras.layers.Dense(channels, name="excite")
        self.spatial = keras.layers.Conv2D(1, self.kernel_size, padding="same",
                                           use_bias=False, name="spatial")
        self.spatial_bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                                          name="spatial_bn")
        self.squeeze.build((None, channels))
        self.excite.build((None, hidden))
        self.spatial.build((None, None, None, 2))
        self.spatial_bn.build((None, None, None, 1))

    def channel_weights(self, features):
        """[N, H, W, C] -> [N, 1, 1, C] channel weights in (0, 1)."""
        weights = ops.sigmoid(self.excite(self.squeeze(ops.mean(features, axis=(1, 2))))
                              + self.excite(self.squeeze(ops.max(features, axis=(1, 2)))))
        return ops.expand_dims(ops.expand_dims(weights, 1), 1)

    def spatial_map(self, features, training=None):
        """Channel-weighted features [N, H, W, C] -> the attention map [N, H, W, 1], (0, 1)."""
        pooled = ops.concatenate([ops.mean(features, axis=-1, keepdims=True),
                                  ops.max(features, axis=-1, keepdims=True)], axis=-1)
        return ops.sigmoid(self.spatial_bn(self.spatial(pooled), training=training))

    def call(self, features, training=None):
        weights = self.channel_weights(features)
        return features * (1.0 + weights * self.spatial_map(features * weights,
                                                             training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction, "kernel_size": self.kernel_size})
        return config
