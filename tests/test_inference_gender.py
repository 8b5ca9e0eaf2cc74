"""tfdldl.AgeEstimator (the Python API) gives gender and its confidence for a gender model,
equal to the SavedModel's serving signature, and no class for an age-only model."""

import glob
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

import tfdldl
from tfdldl.image_io import read_rgb
from tfdldl.label_space import AGE

SIZE = 32  # the session's trained tiny models (tests/conftest.py)
NAMES = ("man", "woman")


@pytest.fixture(scope="module")
def faces(utkface_dir):
    """Two real UTKFace chips at the models' size, as aligned uint8 RGB faces."""
    files = sorted(glob.glob(os.path.join(utkface_dir, "*.jpg")))[200:2200:1000]
    return [cv2.resize(read_rgb(path), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            for path in files]


def test_gender_model_faces_carry_the_serving_gender(faces, trained_tiny_gender_model):
    model = trained_tiny_gender_model[0]
    estimator = tfdldl.AgeEstimator(model)
    serving = tf.saved_model.load(model).signatures["serving_flip_averaged"]
    for face in faces:
        [found] = estimator.predict(face, aligned=True)
        png = cv2.imencode(".png", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1].tobytes()
        expected = serving(images=tf.constant([png]))["gender_probability"].numpy()[0]
        assert found.gender == NAMES[int(np.argmax(expected))]
        assert found.gender_confidence == pytest.approx(float(expected.max()), abs=1e-4)
        assert 0.5 <= found.gender_confidence <= 1.0
        assert found.classes == {"gender": (found.gender, found.gender_confidence)}


def test_age_only_model_faces_have_no_gender(faces, trained_tiny_model):
    model = trained_tiny_model["saved_model"]
    [found] = tfdldl.AgeEstimator(model).predict(faces[0], aligned=True)
    assert found.classes == {}
    with pytest.raises(AttributeError, match="the model's categorical heads are \\[\\]"):
        found.gender  # noqa: B018
    assert AGE.minimum <= found.age <= AGE.maximum
