"""model.initial_weights: a .keras model's weights reach a new model layer by layer name."""

import numpy as np
import pytest

from tfdldl.config import ConfigError
from tfdldl.experiment import load_experiment
from tfdldl.label_space import AGE
from tfdldl.model_setup import build_network, transfer_weights_by_name


def _network(tmp_path, extra="", width=0.5):
    path = tmp_path / "experiment.yaml"
    path.write_text(f"""
name: weights
data: {{tfrecords: unused}}
model: {{arch: tiny, input_size: 32, width: {width}}}
{extra}""")
    return build_network(load_experiment(str(path)), AGE)


def _weights(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def test_an_added_gender_head_starts_fresh_and_the_rest_comes_from_the_age_model(tmp_path):
    age_only = _network(tmp_path)
    with_gender = _network(tmp_path, "gender: {names: [male, female]}")
    before = _weights(with_gender)
    copied = transfer_weights_by_name(age_only, with_gender, what="the age model")
    after, source = _weights(with_gender), _weights(age_only)
    assert set(copied) == set(source) and "gender_logits" in after
    assert "gender_logits" not in copied
    for name in copied:  # trunk and age head: the age model's values
        for mine, theirs in zip(after[name], source[name]):
            np.testing.assert_array_equal(mine, theirs)
    for mine, untouched in zip(after["gender_logits"], before["gender_logits"]):
        np.testing.assert_array_equal(mine, untouched)


def test_weights_of_another_architecture_are_refused_by_layer(tmp_path):
    narrow, wide = _network(tmp_path), _network(tmp_path, width=1.0)
    with pytest.raises(ConfigError, match=r"the narrow model: layer 'conv1_1' has weights of "
                                          r"shapes .* same architecture"):
        transfer_weights_by_name(narrow, wide, what="the narrow model")
