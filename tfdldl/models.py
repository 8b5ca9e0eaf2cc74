"""ThinAgeNet and TinyAgeNet (DLDL-v2's VGG16-layout networks) with a head of tfdldl.heads.

Layout (numbers are output channels, ``M`` a 2x2 max-pool)::

    thin  32,32,M, 64,64,M, 128x3,M, 256x3,M, 256x3,M
    tiny  16,16,M, 32,32,M,  64x3,M, 128x3,M, 128x3,M

Each conv is 3x3 "same", no bias, then BatchNorm and ReLU. With hybrid pooling the last
``M`` is part of the pooling (max-pool then an average over the remaining map); with GAP
the conv5 map is averaged directly. At 224 px, K = 101: 3.71M (thin) and 0.93M (tiny)
parameters.

The model takes RGB in 0..255 (float32 [N, S, S, 3]) and rescales to [-1, 1] itself, so
every caller (training, export, prediction) shares one preprocessing.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import keras

from tfdldl import heads
from tfdldl import layers as dldl_layers
from tfdldl.label_space import LabelSpace
from tfdldl.loss_weighting import LAYER_NAME, LossWeights

ARCHITECTURES = {
    "thin": ((32, 32), (64, 64), (128, 128, 128), (256, 256, 256), (256, 256, 256)),
    "tiny": ((16, 16), (32, 32), (64, 64, 64), (128, 128, 128), (128, 128, 128)),
}
POOLINGS = ("hybrid", "gap")
# Five 2x2 max-pools: the smallest input that leaves a 1x1 map.
MIN_INPUT_SIZE = 32
# BatchNorm as in the Torch original (momentum 0.1 there = 0.9 here, eps 1e-5).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
# Width of the learned embedding of a categorical head's probabilities fed into the label
# head (build_model's ``into_label``).
EMBEDDING_WIDTH = 8


def build_model(arch: Literal["thin", "tiny"], label_space: LabelSpace, input_size: int = 224,
                pooling: Literal["hybrid", "gap"] = "hybrid",
                head: Literal["distribution", "regression", "ranking"] = "distribution",
                width: Optional[float] = None,
                categorical: Sequence[heads.CategoricalHead] = (), into_label: str = "",
                attention: bool = False, loss_weighting: Sequence[str] = ()) -> keras.Model:
    """Build ThinAgeNet or TinyAgeNet with one of the paper's heads.

    Args:
      arch: "thin" (ThinAgeNet) or "tiny" (TinyAgeNet).
      label_space: the label grid; K = ``label_space.num_classes``.
      input_size: S, the side of the square input in pixels (>= 32).
      pooling: "hybrid" (max-pool + average, the paper's HP) or "gap" (global average).
      head: a kind of tfdldl.heads: "distribution" (Dense(K) softmax + expectation;
        DLDL-v2, DLDL, ER, DEX), "regression" (Dense(1); MR) or "ranking" (Dense(K-1)
        sigmoid; Ranking).
      width: optional channel multiplier (None = the paper's widths).
      categorical: categorical heads (tfdldl.heads.CategoricalHead: name, class names,
        record attribute) on the same features, each adding ``<name>_probability``.
      into_label: the name of one of ``categorical`` whose predicted probabilities feed
        the label head, through a learned Dense(8, ReLU) embedding ``<name>_embedding``
        concatenated with the pooled features (the attentional multi-task network's
        design, e.g. the gender into the age); "" = none.
      attention: CBAM channel + spatial attention (tfdldl.layers.ConvBlockAttention, layer
        "attention") on the last conv block's map, before pooling.
      loss_weighting: head names: add their learned loss weights
        (tfdldl.loss_weighting.LossWeights, layer "loss_weighting", an identity on the
        pooled features); () = fixed weights, no such layer.
    Returns:
      A functional ``keras.Model`` named ``<arch>agenet``. Input float32 [N, S, S, 3], RGB
      0..255. Outputs (a dict): "distribution" [N, K] + "value" [N]; or "value" [N]; or
      "ranking" [N, K-1] + "value" [N]; plus "<name>_probability" [N, C] per categorical
      head. "value" is in label units.
    Raises:
      ValueError: unknown arch/pooling/head, input_size < 32, width <= 0, a categorical
        head with fewer than two (or repeated) class names, two categorical heads of one
        name, or ``into_label`` naming none of them.
    """
    _check_choice("arch", arch, tuple(ARCHITECTURES))
    _check_choice("pooling", pooling, POOLINGS)
    head_kind = heads.get(head)
    _check_size(input_size, width)
    _check_categorical(categorical, into_label)

    images = keras.Input((input_size, input_size, 3), name="images", dtype="float32")
    features = _pooled_features(images, arch, pooling, width, attention)
    if loss_weighting:
        features = LossWeights(loss_weighting, name=LAYER_NAME)(features)

    outputs = _heads(features, head_kind, label_space, categorical, into_label)
    return keras.Model(images, outputs, name=f"{arch}agenet")


def _pooled_features(images, arch: str, pooling: str, width: Optional[float],
                     attention: bool):
    """The backbone on ``images`` (float32 [N, S, S, 3], RGB 0..255): rescale to [-1, 1],
    the conv blocks of ``arch`` (scaled by ``width``), CBAM when ``attention``, then the
    pooling; returns the pooled features [N, C]."""
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(images)
    blocks = ARCHITECTURES[arch]
    for b, channels in enumerate(blocks, start=1):
        for c, filters in enumerate(channels, start=1):
            x = _conv_bn_relu(x, _scaled(filters, width), f"conv{b}_{c}")
        if b < len(blocks):  # the last block's pool belongs to hybrid pooling (or none: GAP)
            x = keras.layers.MaxPooling2D(2, name=f"pool{b}")(x)
    if attention:
        x = dldl_layers.ConvBlockAttention(name="attention")(x)
    if pooling == "hybrid":
        return dldl_layers.HybridPooling(name="hybrid_pool")(x)
    return keras.layers.GlobalAveragePooling2D(name="gap")(x)


def _check_size(input_size: int, width: Optional[float]) -> None:
    """Raise ValueError for an input side under MIN_INPUT_SIZE px or a width that is not a
    positive channel multiplier."""
    if int(input_size) < MIN_INPUT_SIZE:
        raise ValueError(f"input_size {input_size} is too small: the network halves the image "
                         f"five times, so it needs at least {MIN_INPUT_SIZE} px")
    if width is not None and not width > 0:
        raise ValueError(f"width must be a positive channel multiplier, got {width}")


def _heads(features, head_kind, label_space: LabelSpace,
           categorical: Sequence[heads.CategoricalHead], into_label: str) -> dict:
    """The categorical heads, then the label head (fed one of them when ``into_label``) on
    pooled features."""
    outputs, label_features = {}, features
    for head in categorical:
        outputs.update(head.build(features))
        if head.name == into_label:
            embedded = keras.layers.Dense(EMBEDDING_WIDTH, activation="relu",
                                          name=f"{head.name}_embedding")(
                outputs[head.probability])
            label_features = keras.layers.Concatenate(name="age_features")(
                [features, embedded])
    outputs.update(head_kind.build(label_features, label_space))
    return outputs


def _check_categorical(categorical: Sequence[heads.CategoricalHead], into_label: str) -> None:
    """Raise ValueError for two categorical heads of one name, or an ``into_label`` that
    names none of them."""
    names = [head.name for head in categorical]
    if len(set(names)) != len(names):
        raise ValueError(f"categorical heads need distinct names, got {names}")
    if into_label and into_label not in names:
        raise ValueError(f"into_label {into_label!r} feeds a categorical head's prediction "
                         f"into the label head: it must name one of the categorical heads "
                         f"{names}")


def label_space_of(model: keras.Model) -> LabelSpace:
    """The label space a model from :func:`build_model` predicts on (read from its layers).

    Raises:
      ValueError: the model has no label-space layer (it was not built by build_model).
    """
    for layer in model.layers:
        if isinstance(layer, dldl_layers.LabelSpaceLayer):
            return layer.label_space
    raise ValueError(f"model {model.name!r} has no tfdldl label-space layer (Expectation, "
                     "RankingCount or RegressionValue); build it with tfdldl.models.build_model")


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def _scaled(filters: int, width: Optional[float]) -> int:
    return filters if width is None else max(1, int(round(filters * width)))


def _conv_bn_relu(x, filters: int, name: str):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                        name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)
