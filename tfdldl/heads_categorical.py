"""Categorical heads: a softmax over named classes beside a label head (tfdldl.heads).

A :class:`CategoricalHead` named ``<name>`` predicts the integer codes of one record
feature, its ``attribute`` (tfdldl.example_schema: UTKFace's "gender" codes 0 = male,
1 = female, or its "group" codes, the race), as ``<name>_probability`` [N, C] (softmax over
the C class names the config gives, column c = code c), trained with a cross-entropy masked
where the record's code is unknown (-1). A model may carry any number of them; it is
summarised by a :class:`HeadSet` (tfdldl.heads.of_outputs, tfdldl.heads.of_model), whose
serving outputs are the union of its heads'.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from tfdldl import head_kinds
from tfdldl import layers as dldl_layers
from tfdldl import losses as dldl_losses
from tfdldl.heads_label import Head, as_float32
from tfdldl.output_names import categorical_head_of, logits_layer, probability_output


class CategoricalHead(Head):
    """Dense(C) ``<name>_logits`` -> softmax over C named classes
    (:class:`tfdldl.layers.ClassProbabilities`, layer ``<name>_probability``).

    Args:
      name: the head's name; its output is ``<name>_probability``.
      names: the class names in record-code order (at least two to build it; () for a
        head found from output names alone, which can make targets and summaries).
      attribute: the record feature it predicts (tfdldl.example_schema key); "" = ``name``.

    Targets: the record's ``attribute`` code as float32 [N] (-1 unknown); loss
    :class:`tfdldl.losses.MaskedCrossEntropy` ("masked_cross_entropy"); serving output
    ``<name>_probability`` float32 [N, C], column c = the probability of name c (code c).
    """

    kind = head_kinds.CATEGORICAL.name
    loss_names = head_kinds.CATEGORICAL.loss_names

    def __init__(self, name: str, names: Sequence[str] = (), attribute: str = ""):
        self.name, self.names = name, tuple(names)
        self.attribute = attribute or name
        self.probability = probability_output(name)
        self.outputs = self.serving_outputs = (self.probability,)
        self.record_fields = (self.attribute,)

    def __repr__(self) -> str:
        return (f"CategoricalHead({self.name!r}, names={list(self.names)}, "
                f"attribute={self.attribute!r})")

    def build(self, features) -> dict:
        """Keras layers on pooled features [N, F] -> {"<name>_probability": [N, C]}.

        Raises:
          ValueError: fewer than two class names, or repeated ones.
        """
        logits = keras.layers.Dense(len(self.names), name=logits_layer(self.name))(features)
        return {self.probability: dldl_layers.ClassProbabilities(
            self.names, attribute=self.attribute, name=self.probability)(logits)}

    def build_loss(self, weight: float = 1.0) -> tuple[dict, dict]:
        """(losses, loss_weights) for ``model.compile``: the masked cross-entropy x weight.

        Raises:
          ValueError: a negative or non-finite weight.
        """
        weight = float(weight)
        if not (weight >= 0.0 and weight < float("inf")):
            raise ValueError(f"the {self.name} loss weight must be finite and >= 0, "
                             f"got {weight}")
        return ({self.probability: dldl_losses.MaskedCrossEntropy(len(self.names))},
                {self.probability: weight})

    def head_losses(self, spec, label_space) -> tuple[dict, dict]:
        """The masked cross-entropy over the head's names (weight 1 within the head)."""
        return self.build_loss(1.0)

    def targets(self, record, label_space):
        return {self.probability: as_float32(record[self.attribute])}

    def summarise(self, outputs, grid):
        return {self.probability: ops.cast(outputs[self.probability], "float32")}


def of_spec(spec) -> CategoricalHead:
    """The head of one resolved ``heads:`` entry of kind categorical
    (tfdldl.experiment.HeadConfig: name, names, attribute)."""
    return CategoricalHead(spec.name, spec.names, spec.attribute)


def of_output_names(output_names) -> list[CategoricalHead]:
    """The categorical heads whose outputs are among ``output_names`` (by the
    ``<name>_probability`` convention; each reads the record feature ``<name>``)."""
    return [CategoricalHead(name) for name in map(categorical_head_of, output_names) if name]


def of_model(model) -> list[CategoricalHead]:
    """The categorical heads of a tfdldl model, with their class names and attributes (read
    from its :class:`tfdldl.layers.ClassProbabilities` layers), in layer order."""
    return [CategoricalHead(categorical_head_of(layer.name) or layer.name, layer.names,
                            layer.attribute or "")
            for layer in model.layers if isinstance(layer, dldl_layers.ClassProbabilities)]


class HeadSet(Head):
    """One label head (the primary, which gives ``value``) plus auxiliary heads.

    ``kind`` is the primary's; outputs, serving outputs and record fields are the union of
    the heads'; :meth:`targets` and :meth:`summarise` merge theirs.
    """

    def __init__(self, primary: Head, auxiliary):
        self.primary, self.auxiliary = primary, tuple(auxiliary)
        self.members = (primary, *self.auxiliary)
        self.kind = primary.kind
        self.outputs = tuple(name for head in self.members for name in head.outputs)
        self.serving_outputs = tuple(name for head in self.members
                                     for name in head.serving_outputs)
        self.record_fields = tuple(dict.fromkeys(
            field for head in self.members for field in head.record_fields))

    def targets(self, record, label_space):
        made: dict = {}
        for head in self.members:
            made.update(head.targets(record, label_space))
        return made

    def summarise(self, outputs, grid):
        summary = self.primary.summarise(outputs, grid)
        for head in self.auxiliary:
            summary.update(head.summarise(outputs, grid))
        return summary


def class_names(model) -> dict[str, list[str]]:
    """{probability output: its class names in column order} of a model, e.g.
    {"gender_probability": ["male", "female"]}; {} when it has no such output."""
    return {head.probability: list(head.names) for head in of_model(model)}


def class_attributes(model) -> dict[str, str]:
    """{probability output: the record feature it predicts} of a model, e.g.
    {"race_probability": "group"}; {} when it has no such output."""
    return {head.probability: head.attribute for head in of_model(model)}
