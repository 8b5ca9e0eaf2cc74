"""Attention maps (tfdldl.attention_maps) of real tiny models, and evaluate's report of them."""

import os

import keras
import numpy as np
import pytest

from data_prep.synthetic import write_tfrecord_set
from tfdldl import attention_maps, evaluate, export, heads, models, report
from tfdldl.inference import load_predictor
from tfdldl.label_space import AGE
from tfdldl.manifest import read_manifest

SIZE = 32
GENDER = heads.CategoricalHead("gender", ("male", "female"))


@pytest.fixture(scope="module")
def attention_model(tmp_path_factory):
    """An untrained TinyAgeNet with attention and the gender head: .keras file and SavedModel."""
    root = tmp_path_factory.mktemp("attention")
    keras.utils.set_random_seed(4)
    model = models.build_model("tiny", AGE, input_size=SIZE, categorical=[GENDER],
                               attention=True)
    keras_path = str(root / "attention.keras")
    model.save(keras_path)
    config = {"model": {"arch": "tiny", "input_size": SIZE, "pooling": "hybrid",
                        "attention": True}}
    saved = export.export_saved_model(model, str(root), "attention", 1, config_dict=config)
    return model, keras_path, saved, root


def _images(count=5, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, SIZE, SIZE, 3)).astype(np.float32)


def test_map_is_the_spatial_map_the_attention_layer_multiplies_its_features_by(attention_model):
    model = attention_model[0]
    maps = attention_maps.attention_maps(attention_maps.map_model(model), _images())
    assert maps.shape == (5, SIZE // 16, SIZE // 16)
    assert np.all((maps > 0) & (maps < 1)) and maps.std() > 1e-4
    layer = model.get_layer(attention_maps.ATTENTION_LAYER)
    features, output = keras.Model(model.input, [layer.input, layer.output]).predict_on_batch(
        _images())
    weights = keras.ops.convert_to_numpy(layer.channel_weights(features))
    np.testing.assert_allclose(features * (1.0 + weights * maps[..., None]), output,
                               rtol=1e-5, atol=1e-5)
    plain = models.build_model("tiny", AGE, input_size=SIZE)
    assert attention_maps.map_model(plain) is None


def test_saved_model_maps_equal_the_keras_files(attention_model, untrained_tiny_model):
    _, keras_path, saved, _ = attention_model
    from_keras = attention_maps.map_model(attention_maps.keras_model(load_predictor(keras_path)))
    from_saved = attention_maps.map_model(attention_maps.keras_model(load_predictor(saved)))
    np.testing.assert_allclose(attention_maps.attention_maps(from_saved, _images()),
                               attention_maps.attention_maps(from_keras, _images()), atol=1e-6)
    plain = untrained_tiny_model[0]  # the session's SavedModel without attention
    assert attention_maps.keras_model(load_predictor(plain)) is None  # nothing rebuilt


def test_overlay_is_red_where_the_map_is_highest():
    face = np.full((48, 48, 3), 128, np.uint8)
    heat = np.outer(np.arange(3, dtype=np.float32), np.ones(3))  # rows: low, middle, high
    mixed = attention_maps.overlay(face, 0.2 + 0.1 * heat)
    assert mixed.shape == face.shape and mixed.dtype == np.uint8
    top, bottom = mixed[:4].astype(int).mean(axis=(0, 1)), mixed[-4:].astype(int).mean(axis=(0, 1))
    assert bottom[0] > bottom[2] + 40 and top[2] > top[0] + 40  # red low down, blue on top
    flat = attention_maps.overlay(face, np.full((3, 3), 0.5, np.float32))
    assert np.ptp(flat.reshape(-1, 3), axis=0).max() == 0  # a constant map tints evenly
    with pytest.raises(ValueError, match=r"RGB face \[H, W, 3\] and a 2-D map"):
        attention_maps.overlay(face[..., 0], heat)


def test_evaluate_report_overlays_attention_only_for_a_model_with_it(attention_model):
    _, _, saved, root = attention_model
    data = write_tfrecord_set(str(root / "data"), AGE, {"test": 16}, image_size=48)
    out = root / "eval"
    results = evaluate.evaluate(saved, data, "test", str(out), batch_size=16)
    assert results["gender_confusion"] is not None
    assert (out / report.ATTENTION_PNG).stat().st_size > 0
    page = (out / report.HTML_NAME).read_text(encoding="utf-8")
    assert "Attention maps on the best and worst" in page and report.NO_ATTENTION not in page
    predictor = load_predictor(saved)
    predictions = evaluate.collect_predictions(predictor, read_manifest(data), "test")
    for _, samples in evaluate.face_groups(predictions, count=2, predictor=predictor):
        for sample in samples:  # the overlay lies on the record's face, at its size
            assert sample.attention.shape == sample.image.shape == (48, 48, 3)
    assert os.path.exists(out / report.FACES_PNG)
