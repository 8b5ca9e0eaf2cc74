"""Tiny real models for the evaluate / predict / TFLite tests: built, optionally trained, exported."""

import os

import keras
import numpy as np

from tfdldl import export, heads, models
from tfdldl.evaluate import read_split
from tfdldl.label_space import LabelSpace
from tfdldl.manifest import read_manifest

# The project root: the working folder of command-line runs in tests.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_briefly(model, data_dir: str, label_space: LabelSpace, epochs: int) -> None:
    """Fit ``model`` with the DLDL-v2 loss (plus the masked gender cross-entropy when it has
    the gender head) on the train split of a TFRecord folder."""
    batches = list(read_split(read_manifest(data_dir), "train", 64))
    images = np.concatenate([batch["image"] for batch in batches])
    labels = np.concatenate([batch["label"] for batch in batches])
    loss, weights = heads.build_loss("dldl_v2", label_space)
    targets = {"distribution": label_space.gaussian(labels, 2.0), "value": labels}
    names = heads.class_names(model).get(heads.GENDER_PROBABILITY)
    if names:
        gender_loss, gender_weight = heads.GENDER.build_loss(len(names), 1.0)
        loss, weights = {**loss, **gender_loss}, {**weights, **gender_weight}
        targets[heads.GENDER_PROBABILITY] = np.concatenate(
            [batch["gender"] for batch in batches]).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, loss_weights=weights)
    model.fit(images, targets, epochs=epochs, batch_size=32, verbose=0)


def tiny_saved_model(root: str, label_space: LabelSpace, size: int, data_dir: str | None = None,
                     epochs: int = 0, seed: int = 0,
                     gender_names: tuple[str, ...] = ()) -> tuple[str, str]:
    """TinyAgeNet at ``size`` px, trained ``epochs`` on ``data_dir`` (0: untrained), saved twice.

    ``gender_names`` adds the gender head (tfdldl.heads.GenderHead), trained with the age.

    Returns:
      (SavedModel version folder, .keras file path).
    """
    keras.utils.set_random_seed(seed)
    model = models.build_model("tiny", label_space, input_size=size, gender_names=gender_names)
    if epochs:
        train_briefly(model, data_dir, label_space, epochs)
    keras_path = os.path.join(root, "tiny.keras")
    model.save(keras_path)
    return export.export_saved_model(model, root, "tiny", 1), keras_path
