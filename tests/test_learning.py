"""A tiny DLDL-v2 model learns: MAE falls far below predicting the mean, in seconds."""

import keras
import numpy as np

from data_prep import synthetic
from tfdldl import heads, metrics, models
from tfdldl.label_space import AGE

SIZE = 32
# A categorical head on a painted mark (record codes 0 absent, 1 present).
MARK = heads.CategoricalHead("gender", ("absent", "present"))


def synthetic_set(count, seed):
    """Images whose brightness and ring pattern encode the age; float32 0..255, labels."""
    rng = np.random.default_rng(seed)
    labels = synthetic.sample_labels(AGE, count, rng)
    images = np.stack([synthetic.render(float(y), AGE, SIZE, rng) for y in labels])
    return images.astype(np.float32), labels


def test_tiny_model_learns_the_label_from_the_image():
    train_images, train_labels = synthetic_set(768, seed=0)
    test_images, test_labels = synthetic_set(128, seed=1)
    keras.utils.set_random_seed(0)
    model = models.build_model("tiny", AGE, input_size=SIZE, width=0.5)
    loss, weights = heads.build_loss("dldl_v2", AGE)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, loss_weights=weights,
                  metrics=metrics.build_metrics("age"))
    targets = {"distribution": AGE.gaussian(train_labels, synthetic.SYNTHETIC_SIGMA),
               "value": train_labels}
    model.fit(train_images, targets, batch_size=32, epochs=8, verbose=0)

    predicted = model.predict(test_images, batch_size=128, verbose=0)["value"]
    baseline = metrics.mae(np.full_like(test_labels, train_labels.mean()), test_labels)
    learned = metrics.mae(predicted, test_labels)
    assert baseline > 20  # uniform ages 0..100
    assert learned < 0.3 * baseline, (learned, baseline)


def paint_attribute(images, attribute):
    """A white stripe over the bottom 6 rows of the images whose attribute is 1."""
    painted = images.copy()
    painted[attribute == 1, -6:, :, :] = 255.0
    return painted


def test_two_head_model_learns_a_number_and_a_binary_attribute():
    """The age+gender network (attention, gender fed into age) learns both what the image
    encodes (the label) and a binary attribute painted into it; 10 % of the training
    attributes are unknown (-1) and masked out of the loss."""
    rng = np.random.default_rng(2)
    train_images, train_labels = synthetic_set(768, seed=0)
    test_images, test_labels = synthetic_set(128, seed=1)
    train_attribute, test_attribute = rng.integers(0, 2, 768), rng.integers(0, 2, 128)
    train_images = paint_attribute(train_images, train_attribute)
    test_images = paint_attribute(test_images, test_attribute)
    known = rng.uniform(size=768) > 0.1
    keras.utils.set_random_seed(0)
    model = models.build_model("tiny", AGE, input_size=SIZE, width=0.5,
                               categorical=[MARK], into_label=MARK.name, attention=True)
    loss, weights = heads.build_loss("dldl_v2", AGE)
    gender_loss, gender_weight = MARK.build_loss()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss={**loss, **gender_loss},
                  loss_weights={**weights, **gender_weight})
    targets = {"distribution": AGE.gaussian(train_labels, synthetic.SYNTHETIC_SIGMA),
               "value": train_labels,
               MARK.probability: np.where(known, train_attribute, -1).astype(np.float32)}
    model.fit(train_images, targets, batch_size=32, epochs=8, verbose=0)

    predicted = model.predict(test_images, batch_size=128, verbose=0)
    baseline = metrics.mae(np.full_like(test_labels, train_labels.mean()), test_labels)
    learned = metrics.mae(predicted["value"], test_labels)
    assert learned < 0.3 * baseline, (learned, baseline)
    accuracy = np.mean(predicted[MARK.probability].argmax(axis=-1) == test_attribute)
    assert accuracy > 0.9, accuracy  # chance is 0.5
