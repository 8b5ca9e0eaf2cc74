"""The models' output names: the serving contract (tfdldl.heads owns the heads behind them).

Kept free of Keras and TensorFlow so that modules that only read outputs by name (the
predictors, the command lines answering --help) can import them cheaply.

A categorical head named ``<name>`` (tfdldl.heads_categorical) outputs
``<name>_probability`` [N, C] from a Dense layer ``<name>_logits``; a prediction row names
its most probable class ``<name>`` and that class's probability ``<name>_confidence``.
"""

VALUE = "value"
STDDEV = "stddev"
DISTRIBUTION = "distribution"
RANKING = "ranking"
PROBABILITY_SUFFIX = "_probability"
LOGITS_SUFFIX = "_logits"
CONFIDENCE_SUFFIX = "_confidence"


def probability_output(head: str) -> str:
    """The output of the categorical head ``head``: "gender" -> "gender_probability"."""
    return head + PROBABILITY_SUFFIX


def logits_layer(head: str) -> str:
    """The Dense layer giving the logits of the categorical head ``head``."""
    return head + LOGITS_SUFFIX


def categorical_head_of(output: str) -> str | None:
    """The categorical head whose output ``output`` is ("race_probability" -> "race"), or
    None for any other output."""
    if output.endswith(PROBABILITY_SUFFIX) and len(output) > len(PROBABILITY_SUFFIX):
        return output[:-len(PROBABILITY_SUFFIX)]
    return None
