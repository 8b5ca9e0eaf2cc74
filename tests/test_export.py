"""tfdldl.export: real SavedModels of a tiny model, loaded back and compared with Keras."""

import json
import os
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdldl import export, image_io, models
from tfdldl.label_space import AGE, LabelSpace

SIZE = 32
SPACE = LabelSpace(0.0, 20.0, 0.5, name="age")  # K = 41: a non-unit step through the export


def face_like(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth uint8 RGB [H, W, 3] picture (JPEG-friendly, unlike noise)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = rng.integers(40, 200, 3)
    centre = (int(width * rng.uniform(0.4, 0.6)), int(height * rng.uniform(0.4, 0.6)))
    cv2.ellipse(image, centre, (width // 3, height // 2 - 2), 0, 0, 360,
                tuple(int(c) for c in rng.integers(60, 255, 3)), -1)
    cv2.circle(image, (width // 3, height // 3), max(1, width // 10), (20, 20, 20), -1)
    return cv2.GaussianBlur(image, (3, 3), 0)


def encode(image: np.ndarray, extension: str = ".jpg") -> bytes:
    """RGB uint8 -> encoded bytes (cv2 wants BGR)."""
    ok, data = cv2.imencode(extension, np.ascontiguousarray(image[:, :, ::-1]))
    assert ok
    return data.tobytes()


def decode_like_the_graph(data: bytes) -> np.ndarray:
    """float32 [H, W, 3] 0..255 decoded as the signature decodes (tfdldl.image_io's rules)."""
    return image_io.decode_rgb(data).astype(np.float32)


def keras_outputs(model, images: np.ndarray) -> dict:
    return {key: keras.ops.convert_to_numpy(value)
            for key, value in model(images, training=False).items()}


def numpy_stddev(distribution: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """sqrt(Σ p_k (l_k - Σ p_k l_k)²) in float64."""
    p, grid = distribution.astype(np.float64), grid.astype(np.float64)
    mean = p @ grid
    return np.sqrt((p * (grid[None, :] - mean[:, None]) ** 2).sum(-1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(Keras model, SavedModel folder, saved_models root) of a tiny untrained model."""
    keras.utils.set_random_seed(1)
    model = models.build_model("tiny", SPACE, input_size=SIZE)
    root = str(tmp_path_factory.mktemp("saved_models"))
    path = export.export_saved_model(model, root, "tiny_age", 3,
                                     config_dict={"model": {"arch": "tiny"}, "seed": 1})
    return model, path, root


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[1])


def test_layout_and_assets(exported):
    model, path, root = exported
    assert path == os.path.join(root, "tiny_age", "3")
    assert sorted(os.listdir(os.path.join(root, "tiny_age"))) == ["3"]  # no partial folder left
    serving = export.load_serving(path)
    assert serving.label_space == SPACE
    assert serving.input_size == SIZE and serving.head == "distribution"
    assert serving.config == {"model": {"arch": "tiny"}, "seed": 1}
    with open(os.path.join(path, "assets", export.LABEL_SPACE_ASSET)) as stream:
        assert LabelSpace.from_dict(json.load(stream)) == models.label_space_of(model)


def test_serving_default_matches_keras_on_real_jpeg_bytes(exported, loaded):
    model, _, _ = exported
    encoded = [encode(face_like(seed, SIZE, SIZE)) for seed in range(5)]
    encoded.append(encode(face_like(9, SIZE, SIZE), ".png"))
    outputs = loaded.signatures["serving_default"](images=tf.constant(encoded))
    pixels = np.stack([decode_like_the_graph(data) for data in encoded])
    expected = keras_outputs(model, pixels)
    assert outputs["value"].shape == (6,) and outputs["distribution"].shape == (6, 41)
    np.testing.assert_allclose(outputs["value"], expected["value"], atol=1e-5)
    np.testing.assert_allclose(outputs["distribution"], expected["distribution"], atol=1e-5)
    np.testing.assert_allclose(outputs["stddev"], numpy_stddev(
        expected["distribution"], SPACE.grid), rtol=1e-5, atol=1e-5)
    # The comparison has teeth: one grey level more everywhere moves the values by far more
    # than the tolerance, so a decoder or resize that differs would be caught.
    shifted = keras_outputs(model, pixels + 1.0)["value"]
    assert np.abs(shifted - outputs["value"].numpy()).max() > 1e-4


def test_serving_default_resizes_other_sizes_in_the_graph(exported, loaded):
    model, _, _ = exported
    encoded = [encode(face_like(3, 50, 41)), encode(face_like(4, 20, 27))]
    outputs = loaded.signatures["serving_default"](images=tf.constant(encoded))
    pixels = np.stack([tf.image.resize(decode_like_the_graph(data), [SIZE, SIZE]).numpy()
                       for data in encoded])
    np.testing.assert_allclose(outputs["value"], keras_outputs(model, pixels)["value"],
                               atol=1e-5)


def test_predict_images_signature(exported, loaded):
    model, _, _ = exported
    images = np.stack([face_like(seed, SIZE, SIZE) for seed in range(3)]).astype(np.float32)
    outputs = loaded.signatures["predict_images"](images=tf.constant(images))
    expected = keras_outputs(model, images)
    np.testing.assert_allclose(outputs["value"], expected["value"], atol=1e-5)
    np.testing.assert_allclose(outputs["distribution"], expected["distribution"], atol=1e-5)
    larger = np.stack([face_like(seed, 48, 48) for seed in range(2)]).astype(np.float32)
    resized = tf.image.resize(larger, [SIZE, SIZE]).numpy()
    np.testing.assert_allclose(
        export.load_serving(exported[1]).predict_images(larger)["value"],
        keras_outputs(model, resized)["value"], atol=1e-5)


def test_flip_averaged_signature(exported):
    model, path, _ = exported
    faces = [face_like(seed, SIZE, SIZE) for seed in range(3)]
    outputs = export.load_serving(path).predict_flip_averaged([encode(face) for face in faces])
    pixels = np.stack([decode_like_the_graph(encode(face)) for face in faces])
    plain, mirrored = keras_outputs(model, pixels), keras_outputs(model, pixels[:, :, ::-1])
    distribution = 0.5 * (plain["distribution"] + mirrored["distribution"])
    value = 0.5 * (plain["value"] + mirrored["value"])
    np.testing.assert_allclose(outputs["value"], value, atol=1e-5)
    np.testing.assert_allclose(outputs["distribution"], distribution, atol=1e-5)
    np.testing.assert_allclose(outputs["stddev"], numpy_stddev(distribution, SPACE.grid),
                               rtol=1e-5, atol=1e-5)


def test_saved_model_cli_lists_the_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", exported[1]], capture_output=True,
                           text=True, timeout=120, check=True).stdout
    for name in export.SIGNATURES:
        assert f"signature_def['{name}']" in shown
    default = shown.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "inputs['images']" in default and "DT_STRING" in default
    for output in ("value", "stddev", "distribution"):
        assert f"outputs['{output}']" in default


def test_models_config_parses_as_a_model_server_config(exported, tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    _, path, _ = exported
    root = tmp_path / "saved_models"
    for name in ("age_thin", "age_tiny"):
        shutil.copytree(path, root / name / "1")
    (root / "age_tiny" / ".2.partial-x").mkdir()  # an unfinished export: not a version
    (root / "runs").mkdir()  # no version folder: not a model
    config_path = export.write_models_config(root)
    with open(config_path) as stream:
        config = text_format.Parse(stream.read(), model_server_config_pb2.ModelServerConfig())
    entries = [(c.name, c.base_path, c.model_platform)
               for c in config.model_config_list.config]
    assert entries == [("age_thin", "/models/age_thin", "tensorflow"),
                       ("age_tiny", "/models/age_tiny", "tensorflow")]
    with pytest.raises(FileNotFoundError, match="no exported model"):
        export.write_models_config(tmp_path / "empty")


def test_keras_file_round_trip(exported, tmp_path):
    model, _, _ = exported
    path = export.save_keras(model, tmp_path / "fine_tune" / "tiny.keras")
    assert os.listdir(tmp_path / "fine_tune") == ["tiny.keras"]
    reloaded = keras.saving.load_model(path, compile=False)
    images = np.stack([face_like(seed, SIZE, SIZE) for seed in range(2)]).astype(np.float32)
    np.testing.assert_allclose(keras_outputs(reloaded, images)["value"],
                               keras_outputs(model, images)["value"], atol=1e-6)
    assert models.label_space_of(reloaded) == SPACE
    with pytest.raises(ValueError, match="must end in .keras"):
        export.save_keras(model, tmp_path / "tiny.h5")


def test_model_built_under_mirrored_strategy_exports(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = models.build_model("tiny", AGE, input_size=SIZE)
    images = face_like(5, SIZE, SIZE)[None].astype(np.float32)
    serving = export.load_serving(export.export_saved_model(model, tmp_path, "mirrored", 1))
    np.testing.assert_allclose(serving.predict_images(images)["value"],
                               keras_outputs(model, images)["value"], atol=1e-5)


def test_refuses_bad_names_versions_and_existing_versions(exported):
    model, _, root = exported
    with pytest.raises(ValueError, match="model name 'a/b'"):
        export.export_saved_model(model, root, "a/b", 1)
    with pytest.raises(ValueError, match="non-negative integer"):
        export.export_saved_model(model, root, "tiny_age", "4")
    with pytest.raises(FileExistsError, match="higher version number"):
        export.export_saved_model(model, root, "tiny_age", 3)


def test_failed_export_leaves_no_version_folder(exported, tmp_path, monkeypatch):
    model, _, _ = exported

    def disk_full(self, *args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export.export_saved_model(model, tmp_path, "tiny_age", 1)
    assert os.listdir(tmp_path / "tiny_age") == []


def test_load_serving_errors(exported, tmp_path):
    _, path, root = exported
    with pytest.raises(export.ServingLoadError, match="is not a folder"):
        export.load_serving(tmp_path / "missing")
    with pytest.raises(export.ServingLoadError, match=r"no saved_model.pb\); it holds version"):
        export.load_serving(os.path.join(root, "tiny_age"))
    with pytest.raises(export.ServingLoadError, match="no saved_model.pb"):
        export.load_serving(tmp_path)

    class Foreign(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def score(self, x):
            return {"score": tf.reduce_sum(x, axis=-1)}

    foreign = Foreign()
    tf.saved_model.save(foreign, str(tmp_path / "foreign"), signatures={"score": foreign.score})
    with pytest.raises(export.ServingLoadError,
                       match=r"lacks the signature\(s\) \['serving_default', 'predict_images'\]; "
                             r"it has \['score'\]"):
        export.load_serving(tmp_path / "foreign")

    stripped = tmp_path / "stripped"
    shutil.copytree(path, stripped)
    os.remove(stripped / "assets" / export.LABEL_SPACE_ASSET)
    with pytest.raises(export.ServingLoadError, match="no assets/label_space.json"):
        export.load_serving(stripped)


def test_refuses_a_model_without_the_contract_outputs(tmp_path):
    def pooled_model(side, output):
        inputs = keras.Input((side, side, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(inputs)
        return keras.Model(inputs, {output: keras.layers.Dense(1)(pooled)})

    with pytest.raises(ValueError, match=r"no tfdldl head has the outputs \['dense'\]; the label "
                                         r"heads have distribution: \['distribution', 'value'\]"
                                         r".*<name>_probability outputs of categorical heads"):
        export.export_saved_model(pooled_model(SIZE, "score"), tmp_path, "plain", 1)
    with pytest.raises(ValueError, match=r"taking \[N, S, S, 3\] images"):
        export.export_saved_model(pooled_model(None, "value"), tmp_path, "plain", 1)
    with pytest.raises(TypeError, match="not a single bytes object"):
        export.encoded_list(b"\xff\xd8")
