"""The kinds of model head and the training losses of each, by name: a config's vocabulary.

Kept free of Keras and TensorFlow (like :mod:`tfdldl.output_names`), so that a config's
``heads``/``loss`` entries are checked (:mod:`tfdldl.heads_config`) before a command line
imports them. The head classes of :mod:`tfdldl.heads` take their ``kind``, ``loss_names``
and ``attribute`` from here; everything else about a head (layers, losses, targets,
post-processing) is theirs.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of head as a config names it.

    Attributes:
      name: the kind ("distribution", ...), a config's ``heads[i].kind``.
      loss_names: the losses (tfdldl.losses) that train it; the first is the default.
      attribute: what it predicts when the config names nothing; None: the record's
        label (the experiment's task) for a label head, the head's own name for a
        categorical head.
    """

    name: str
    loss_names: tuple[str, ...]
    attribute: str | None = None


DISTRIBUTION = Kind("distribution", ("dldl_v2", "dldl", "er", "dex"))
REGRESSION = Kind("regression", ("mr_l1", "mr_l2"))
RANKING = Kind("ranking", ("ranking",))
# A softmax over named classes of an integer record feature (its ``attribute``, e.g.
# UTKFace's gender or race codes); any number of them beside the label head.
CATEGORICAL = Kind("categorical", ("masked_cross_entropy",))

# The label heads (one per model, predicting the record's label), then every kind.
LABEL_KINDS: dict[str, Kind] = {kind.name: kind for kind in (DISTRIBUTION, REGRESSION, RANKING)}
KINDS_ALL: dict[str, Kind] = {**LABEL_KINDS, CATEGORICAL.name: CATEGORICAL}
# The older single-head form's ``loss.name``: each label loss with the kind it trains.
KIND_OF_LOSS: dict[str, str] = {loss: kind.name for kind in LABEL_KINDS.values()
                                for loss in kind.loss_names}
LOSS_NAMES = tuple(KIND_OF_LOSS)
