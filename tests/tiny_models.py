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
    """Fit ``model`` with the DLDL-v2 loss (plus the masked cross-entropy of each
    categorical head it has, on its record codes) on the train split of a TFRecord folder."""
    batches = list(read_split(read_manifest(data_dir), "train", 64))
    images = np.concatenate([batch["image"] for batch in batches])
    labels = np.concatenate([batch["label"] for batch in batches])
    loss, weights = heads.build_loss("dldl_v2", label_space)
    targets = {"distribution": label_space.gaussian(labels, 2.0), "value": labels}
    for head in heads.categorical_heads(model):
        head_loss, head_weight = head.build_loss()
        loss, weights = {**loss, **head_loss}, {**weights, **head_weight}
        targets[head.probability] = np.concatenate(
            [batch[head.attribute] for batch in batches]).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, loss_weights=weights)
    model.fit(images, targets, epochs=epochs, batch_size=32, verbose=0)


def tiny_saved_model(root: str, label_space: LabelSpace, size: int, data_dir: str | None = None,
                     epochs: int = 0, seed: int = 0,
                     categorical: tuple[heads.CategoricalHead, ...] = ()) -> tuple[str, str]:
    """TinyAgeNet at ``size`` px, trained ``epochs`` on ``data_dir`` (0: untrained), saved twice.

    ``categorical`` adds categorical heads (tfdldl.heads.CategoricalHead), trained with
    the age.

    Returns:
      (SavedModel version folder, .keras file path).
    """
    keras.utils.set_random_seed(seed)
    model = models.build_model("tiny", label_space, input_size=size, categorical=categorical)
    if epochs:
        train_briefly(model, data_dir, label_space, epochs)
    keras_path = os.path.join(root, "tiny.keras")
    model.save(keras_path)
    return export.export_saved_model(model, root, "tiny", 1), keras_path
