"""The ``heads:`` list of an experiment config, and the older single-head form it replaces."""

import os

import pytest

from tfdldl import heads, model_setup
from tfdldl.config import ConfigError
from tfdldl.experiment import load_experiment, resolve_heads
from tfdldl.label_space import AGE

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _architecture(model) -> list:
    """(layer name, class, weight shapes) of every layer: equal for the same network."""
    return [(layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
            for layer in model.layers]


def _compiled(experiment) -> tuple[dict, dict]:
    """{output: (loss class, loss config)} and the loss weights the experiment compiles."""
    losses, weights = heads.compile_losses(resolve_heads(experiment), AGE)
    return {name: (type(loss).__name__, loss.get_config()) for name, loss in losses.items()}, weights


def test_the_heads_config_builds_the_same_model_and_losses_as_the_older_form():
    older = load_experiment(os.path.join(REPO_ROOT, "configs", "utkface_tiny_gender.yaml"))
    listed = load_experiment(os.path.join(REPO_ROOT, "configs",
                                          "utkface_tiny_gender_heads.yaml"))
    assert resolve_heads(older) == resolve_heads(listed)
    assert _compiled(older) == _compiled(listed)
    assert _compiled(listed)[1] == {"distribution": 1.0, "value": 1.0, "gender_probability": 1.0}
    assert _architecture(model_setup.build_network(older, AGE)) == _architecture(
        model_setup.build_network(listed, AGE))


@pytest.mark.parametrize("older, listed", [
    ("loss: {name: mr_l2}", "heads: [{name: age, kind: regression, loss: mr_l2}]"),
    ("loss: {name: dldl_v2, lam: 0.5, kl_normalization: mean}\n"
     "gender: {names: [m, f], weight: 0.3}",
     "heads: [{name: age, kind: distribution, lam: 0.5, kl_normalization: mean},\n"
     "        {name: gender, kind: categorical, names: [m, f], weight: 0.3}]"),
])
def test_single_head_forms_map_onto_the_same_heads(tmp_path, older, listed):
    """Defaults fill in: attribute (the task / the head's name) and loss (the kind's first)."""
    def load(name, text):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\n{text}\n")
        return load_experiment(str(path))

    assert resolve_heads(load("older", older)) == resolve_heads(load("listed", listed))
    assert _compiled(load("older", older)) == _compiled(load("listed", listed))


def test_a_weighted_head_scales_its_whole_loss(tmp_path):
    path = tmp_path / "weighted.yaml"
    path.write_text("heads: [{name: age, kind: distribution, lam: 0.5, weight: 2}]\n")
    assert _compiled(load_experiment(str(path)))[1] == {"distribution": 2.0, "value": 1.0}


AGE_HEAD = "{name: age, kind: distribution}"


@pytest.mark.parametrize("text, message", [
    ("heads: [{name: age, kind: softmax}]",
     r"'heads\[0\].kind' must be one of 'distribution', 'regression', 'ranking', "
     r"'categorical', got 'softmax'"),
    (f"heads: [{AGE_HEAD}, {{name: g, kind: gender, names: [m, f]}}]",
     r"'heads\[1\].kind' must be one of .*, got 'gender'; a head on the records' gender codes "
     r"is kind categorical with attribute gender"),
    (f"heads: [{AGE_HEAD}, {{name: age, kind: categorical, names: [m, f]}}]",
     r"'heads\[1\].name' 'age' is also the name of heads\[0\]; give every head its own name"),
    ("heads: [{kind: distribution}]", r"'heads\[0\].name' must be a non-empty name, e.g. name: age"),
    ("heads: [{name: age, kind: distribution, weight: -1}]",
     r"'heads\[0\].weight' must be finite and >= 0, got -1"),
    ("loss_weighting: uncertainty\nheads: [{name: age, kind: distribution, weight: 2}]",
     r"'heads\[0\].weight' must be 1 with loss_weighting: uncertainty"),
    ("heads: [{name: age, kind: distribution, loss: mr_l1}]",
     r"'heads\[0\].loss' 'mr_l1' does not train a distribution head; choose one of dldl_v2, "
     r"dldl, er, dex \(or kind regression for mr_l1\)"),
    ("heads: [{name: age, kind: distribution, attribute: gender}]",
     r"'heads\[0\].attribute' must be 'age': a distribution head predicts the records' label"),
    (f"heads: [{AGE_HEAD}, {{name: g, kind: categorical, attribute: gender, names: [m]}}]",
     r"'heads\[1\].names' must be at least two distinct class names"),
    (f"heads: [{AGE_HEAD}, {{name: race, kind: categorical, names: [a, b]}}]",
     r"'heads\[1\].attribute' must name the record codes a categorical head predicts, one "
     r"of gender, group .tfdldl.example_schema., got 'race' .the head's name"),
    (f"heads: [{AGE_HEAD}, {{name: race, kind: categorical, attribute: label, names: [a, b]}}]",
     r"'heads\[1\].attribute' must name the record codes .* got 'label'$"),
    ("heads: [{name: age, kind: distribution, names: [a, b]}]",
     r"'heads\[0\].names' are only for a categorical head"),
    (f"heads: [{AGE_HEAD}, {{name: r, kind: ranking}}]",
     r"'heads' must hold exactly one label head .* got kinds \['distribution', 'ranking'\]"),
    ("heads: [{name: gender, kind: categorical, names: [m, f]}]",
     r"'heads' must hold exactly one label head .* got kinds \['categorical'\]"),
    (f"loss: {{name: dex}}\nheads: [{AGE_HEAD}]",
     "give the heads either as a 'heads' list or in the older 'loss'/'gender' sections"),
    (f"heads: [{{name: age, kind: distribution, lamda: 1}}]", r"unknown key 'heads\[0\].lamda'"),
    (f"model: {{gender_into_age: true}}\nheads: [{AGE_HEAD}]",
     "'model.gender_into_age' needs the gender head"),
    (f"model: {{into_label: race}}\nheads: [{AGE_HEAD}, "
     f"{{name: gender, kind: categorical, names: [m, f]}}]",
     r"'model.into_label' needs the race head: give a heads entry of kind categorical named "
     r"'race'; the categorical heads are \['gender'\]"),
])
def test_bad_heads_are_refused_naming_the_entry_and_the_fix(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as error:
        load_experiment(str(path))
    assert str(path) in str(error.value)
