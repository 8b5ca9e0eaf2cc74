"""The gender head: a softmax over named classes beside a label head (tfdldl.heads).

:class:`GenderHead` adds ``gender_probability`` [N, C] (softmax over the C gender names the
config gives; UTKFace codes 0 = male, 1 = female), trained with a cross-entropy masked
where the record's gender is unknown (-1). It never stands alone: a model with it is
summarised by a :class:`HeadSet` (tfdldl.heads.of_outputs), whose serving outputs are the
union of its heads'.
"""

from __future__ import annotations

import keras
from keras import ops

from tfdldl import example_schema as schema
from tfdldl import head_kinds
from tfdldl import layers as dldl_layers
from tfdldl import losses as dldl_losses
from tfdldl.heads_label import Head, as_float32
from tfdldl.output_names import GENDER_PROBABILITY


class GenderHead(Head):
    """Dense(C) -> softmax over C named classes (:class:`tfdldl.layers.ClassProbabilities`).

    Targets: the record's gender code as float32 [N] (-1 unknown); loss
    :class:`tfdldl.losses.MaskedCrossEntropy` ("masked_cross_entropy"); serving output
    ``gender_probability`` float32 [N, C], column c = the probability of name c (record
    code c).
    """

    kind = head_kinds.GENDER.name
    outputs = (GENDER_PROBABILITY,)
    loss_names = head_kinds.GENDER.loss_names
    serving_outputs = (GENDER_PROBABILITY,)
    record_fields = (schema.GENDER,)
    attribute = head_kinds.GENDER.attribute

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

    def head_losses(self, spec, label_space) -> tuple[dict, dict]:
        """The masked cross-entropy over ``spec.names`` (weight 1 within the head)."""
        return self.build_loss(len(spec.names), 1.0)

    def targets(self, record, label_space):
        return {GENDER_PROBABILITY: as_float32(record[schema.GENDER])}

    def summarise(self, outputs, grid):
        return {GENDER_PROBABILITY: ops.cast(outputs[GENDER_PROBABILITY], "float32")}


class HeadSet(Head):
    """One label head (the primary, which gives ``value``) plus auxiliary heads.

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


def class_names(model) -> dict[str, list[str]]:
    """{probability output: its class names in column order} of a model, e.g.
    {"gender_probability": ["male", "female"]}; {} when it has no such output."""
    return {layer.name: list(layer.names) for layer in model.layers
            if isinstance(layer, dldl_layers.ClassProbabilities)}
