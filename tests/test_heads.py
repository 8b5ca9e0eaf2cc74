"""tfdldl.heads: every head answers the same through its .keras file and its SavedModel."""

import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdldl import example_schema, export, heads, models
from tfdldl.inference import load_predictor, predict_flip_averaged
from tfdldl.label_space import LabelSpace
from tiny_models import REPO_ROOT

SIZE = 32
SPACE = LabelSpace(0.0, 20.0, 1.0, name="age")  # K = 21


def faces(count: int) -> np.ndarray:
    """uint8 [count, SIZE, SIZE, 3] smooth pictures with a left-right asymmetry."""
    rng = np.random.default_rng(0)
    images = np.zeros((count, SIZE, SIZE, 3), np.uint8)
    for image in images:
        image[:] = rng.integers(40, 200, 3)
        cv2.circle(image, (int(rng.integers(6, 14)), int(rng.integers(8, 24))), 5,
                   tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    return images


def png(image: np.ndarray) -> bytes:
    """Lossless bytes: both decoders read back exactly these pixels."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    assert ok
    return data.tobytes()


def assert_same(first: dict, second: dict) -> None:
    assert sorted(first) == sorted(second)
    for key in first:
        np.testing.assert_allclose(first[key], second[key], atol=2e-5, rtol=1e-5,
                                   equal_nan=True, err_msg=key)


GENDER = heads.CategoricalHead("gender", ("male", "female"))
RACE = heads.CategoricalHead("race", ("white", "black", "asian", "indian", "others"), "group")


# Each head kind once (an export per case is the cost): ranking alone (no categorical
# head), distribution with the gender head and attention, regression with two categorical
# heads, one fed into the label head. The plain distribution model: tests/test_export.py.
@pytest.mark.parametrize("kind, categorical, into_label, attention",
                         [("ranking", (), "", False),
                          ("distribution", (GENDER,), "", True),
                          ("regression", (GENDER, RACE), "gender", False)])
def test_keras_file_and_saved_model_answer_alike(kind, categorical, into_label, attention,
                                                 tmp_path):
    """The .keras predictor and the SavedModel signatures: same keys, same values, for
    plain images, encoded images and flip averaging (with and without categorical heads,
    one fed into the label head, and attention); a distribution that sums to 1, or a
    regression head's NaN spread."""
    keras.utils.set_random_seed(3)
    model = models.build_model("tiny", SPACE, input_size=SIZE, head=kind,
                               categorical=categorical, into_label=into_label,
                               attention=attention)
    if kind == "ranking":  # spread the sigmoids so that the implied distribution is not flat
        dense = model.get_layer(heads.RANKING)
        kernel, _ = dense.get_weights()
        dense.set_weights([kernel, np.linspace(4, -4, SPACE.num_classes - 1, dtype=np.float32)])
    keras_model = load_predictor(export.save_keras(model, tmp_path / "model.keras"))
    saved = export.export_saved_model(model, tmp_path, "model", 1)
    saved_model = load_predictor(saved)
    images = faces(4)
    encoded = [png(image) for image in images]
    pixels = images.astype(np.float32)

    plain = keras_model.predict_images(pixels)
    expected = heads.get(kind).serving_outputs + tuple(head.probability
                                                       for head in categorical)
    assert sorted(plain) == sorted(expected)
    names = {head.probability: list(head.names) for head in categorical}
    assert keras_model.class_names == saved_model.class_names == names
    attributes = {head.probability: head.attribute for head in categorical}
    assert keras_model.class_attributes == saved_model.class_attributes == attributes
    assert_same(plain, saved_model.predict_images(pixels))
    assert_same(keras_model.predict_encoded(encoded), saved_model.predict_encoded(encoded))
    served = export.load_serving(saved).predict_flip_averaged(encoded)
    assert served.pop(export.ERROR_OUTPUT).tolist() == [b""] * len(images)
    assert_same(predict_flip_averaged(keras_model, pixels), served)
    assert_same(predict_flip_averaged(saved_model, pixels), served)
    assert sorted(heads.KINDS) == ["distribution", "ranking", "regression"]  # each tested
    if kind == "regression":
        assert np.isnan(plain[heads.STDDEV]).all()  # no distribution: no spread
    else:
        assert np.isfinite(plain[heads.STDDEV]).all()
        distribution = plain[heads.DISTRIBUTION]
        assert (distribution >= 0).all()
        np.testing.assert_allclose(distribution.sum(axis=-1), 1.0, atol=1e-5)
    for head in categorical:
        probabilities = plain[head.probability]
        assert probabilities.shape == (len(images), len(head.names))
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
        mirrored = keras_model.predict_images(pixels[:, :, ::-1])[head.probability]
        assert not np.allclose(probabilities, mirrored, atol=1e-6)  # the average means something
        np.testing.assert_allclose(served[head.probability],
                                   (probabilities + mirrored) / 2, atol=2e-5)


def test_targets_are_the_same_in_numpy_and_tensorflow():
    labels = np.array([0.0, 3.0, 7.5, 20.0], np.float32)
    record = {example_schema.LABEL: labels,
              example_schema.DISTRIBUTION: SPACE.gaussian(labels, 2.0)}
    names = [heads.DISTRIBUTION, heads.VALUE, heads.RANKING]
    from_numpy = heads.make_targets(names, record, SPACE)
    from_tf = heads.make_targets(names, {key: tf.constant(value) for key, value in record.items()},
                                 SPACE)
    assert sorted(from_numpy) == sorted(names)
    for name in names:
        np.testing.assert_array_equal(from_numpy[name], from_tf[name].numpy())
    np.testing.assert_array_equal(from_numpy[heads.RANKING], SPACE.ranking(labels))
    assert heads.record_fields([heads.DISTRIBUTION, heads.VALUE]) == (
        example_schema.LABEL, example_schema.DISTRIBUTION)
    assert heads.record_fields([heads.RANKING, heads.VALUE]) == (example_schema.LABEL,)
    assert sorted(heads.make_targets([heads.VALUE], {example_schema.LABEL: labels}, SPACE)) == [
        heads.VALUE]
    with pytest.raises(ValueError, match=r"no target can be made for model output\(s\) "
                                         r"\['logits'\]"):
        heads.make_targets(["logits"], record, SPACE)


def test_categorical_targets_and_masked_loss():
    """A categorical head's record codes become float targets (NumPy and TF alike), read
    from its attribute (the race head from "group"); unknown (-1) faces do not count in the
    loss, which is the mean cross-entropy over the known ones."""
    record = {example_schema.LABEL: np.array([30.0, 40.0, 50.0], np.float32),
              example_schema.GENDER: np.array([0, 1, -1], np.int64),
              example_schema.GROUP: np.array([4, -1, 2], np.int64)}
    names = [heads.VALUE, GENDER.probability]
    assert heads.record_fields(names) == (example_schema.LABEL, example_schema.GENDER)
    with_race = heads.HeadSet(heads.get("regression"), (GENDER, RACE))
    assert heads.record_fields(with_race) == (example_schema.LABEL, example_schema.GENDER,
                                              example_schema.GROUP)
    for outputs in (names, with_race):
        from_numpy = heads.make_targets(outputs, record, SPACE)
        from_tf = heads.make_targets(outputs, {key: tf.constant(value) for key, value in
                                               record.items()}, SPACE)
        np.testing.assert_array_equal(from_numpy[GENDER.probability], [0.0, 1.0, -1.0])
        np.testing.assert_array_equal(from_tf[GENDER.probability].numpy(), [0.0, 1.0, -1.0])
        assert from_numpy[GENDER.probability].dtype == np.float32
    np.testing.assert_array_equal(from_numpy["race_probability"], [4.0, -1.0, 2.0])
    np.testing.assert_array_equal(from_tf["race_probability"].numpy(), [4.0, -1.0, 2.0])

    losses, weights = GENDER.build_loss(0.5)
    assert weights == {"gender_probability": 0.5}
    loss = losses["gender_probability"]
    predicted = np.array([[0.8, 0.2], [0.4, 0.6], [0.01, 0.99]], np.float32)
    value = float(loss(from_numpy[GENDER.probability], predicted))
    assert value == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2, rel=1e-5)
    assert float(loss(np.array([-1.0, -1.0]), predicted[:2])) == 0.0
    with pytest.raises(ValueError, match="race loss weight must be finite and >= 0"):
        RACE.build_loss(-1.0)


def test_categorical_head_set_and_model_errors():
    head = heads.of_outputs(["value", "distribution", "gender_probability", "race_probability"])
    assert head.kind == "distribution"
    assert head.serving_outputs == ("value", "stddev", "distribution", "gender_probability",
                                    "race_probability")
    with pytest.raises(ValueError, match=r"no tfdldl head has the outputs \['gender_probability'\]"):
        heads.of_outputs(["gender_probability"])
    with pytest.raises(ValueError, match="into_label 'gender' feeds a categorical head's"):
        models.build_model("tiny", SPACE, input_size=SIZE, into_label="gender")
    with pytest.raises(ValueError, match="at least two distinct names"):
        models.build_model("tiny", SPACE, input_size=SIZE,
                           categorical=[heads.CategoricalHead("gender", ["male", "male"])])
    with pytest.raises(ValueError, match="categorical heads need distinct names"):
        models.build_model("tiny", SPACE, input_size=SIZE, categorical=[GENDER, GENDER])


def test_ranking_implies_the_distribution_it_was_made_from():
    """The paper's unification: P(y > l_k) = 1 - CDF_k, and back."""
    distribution = SPACE.gaussian(np.array([4.0, 12.0], np.float32), 2.0)
    ranking = 1.0 - np.cumsum(distribution, axis=-1)[:, :-1]
    recovered = keras.ops.convert_to_numpy(heads.distribution_from_ranking(ranking))
    np.testing.assert_allclose(recovered, distribution, atol=1e-6)


def test_heads_are_found_by_loss_and_by_outputs():
    assert heads.for_loss("dex").kind == "distribution"
    assert heads.of_outputs(["value", "ranking"]).kind == "ranking"
    assert heads.of_outputs(["value"]).kind == "regression"
    with pytest.raises(ValueError, match="unknown head 'softmax'; choose one of distribution"):
        heads.get("softmax")
    with pytest.raises(ValueError, match=r"no tfdldl head has the outputs \['logits'\]"):
        heads.of_outputs(["logits"])


def test_keras_file_loads_compiled_after_importing_tfdldl_alone(tmp_path):
    """README's promise: `import tfdldl` is the one import a .keras file needs (fresh process)."""
    from tfdldl import metrics

    model = models.build_model("tiny", SPACE, input_size=SIZE, head="distribution")
    loss, weights = heads.build_loss("dldl_v2", SPACE)
    model.compile(optimizer="adam", loss=loss, loss_weights=weights,
                  metrics=metrics.build_metrics("age"))
    path = str(tmp_path / "model.keras")
    model.save(path)
    code = ("import sys, keras, tfdldl, numpy as np; "
            "model = keras.saving.load_model(sys.argv[1]); "
            "assert type(model.loss['distribution']).__name__ == 'LabelDistributionKL'; "
            "print(np.asarray(model(np.zeros((1, 32, 32, 3), 'float32'))['value']).shape)")
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "(1,)"
