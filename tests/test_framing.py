"""The alignment framing travels with a model: manifest -> exports -> predict's aligner."""

import keras
import pytest

from tfdldl import export, models
from tfdldl.face_align import DEFAULT_FRAMING, LEGACY_FRAMING, Framing
from tfdldl.inference import (TRAINING_FACES_KEY, KerasPredictor, SavedModelPredictor,
                              aligner_for, training_faces_path)
from tfdldl.label_space import AGE

FRAMING = Framing(1.1, -0.05, "replicate")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return models.build_model("tiny", AGE, input_size=32)


def test_saved_model_and_keras_file_carry_the_training_framing(model, tmp_path):
    faces = {"image_size": 48, "framing": FRAMING.to_dict()}
    saved = export.export_saved_model(model, str(tmp_path), "framed", 1,
                                      {TRAINING_FACES_KEY: faces})
    keras_path = export.save_keras(model, str(tmp_path / "framed.keras"), faces)
    for predictor in (SavedModelPredictor(saved), KerasPredictor(keras_path)):
        assert predictor.framing == FRAMING and predictor.face_size == 48
        aligner = aligner_for(predictor, min_face_size=40)
        assert aligner.framing == FRAMING and aligner.output_size == 48
        assert aligner.min_face_size == 40


def test_models_from_before_framings_were_recorded(model, untrained_tiny_model, tmp_path,
                                                  capsys):
    """An old SavedModel was trained on the legacy framing; a bare .keras file says nothing,
    so predict aligns with the default framing and warns."""
    saved = untrained_tiny_model[0]  # the session's, exported with an empty config
    assert SavedModelPredictor(saved).framing == LEGACY_FRAMING
    keras_path = str(tmp_path / "bare.keras")
    model.save(keras_path)
    bare = KerasPredictor(keras_path)
    assert bare.framing is None
    assert aligner_for(bare).framing == DEFAULT_FRAMING
    assert "records no alignment framing" in capsys.readouterr().err
    assert training_faces_path(keras_path).endswith("bare.training_faces.json")
