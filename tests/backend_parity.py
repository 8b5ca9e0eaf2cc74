"""Forward pass, losses, metrics and one learned-loss-weighting SGD step of tiny models,
computed on whichever Keras backend runs.

tests/test_backend_agnostic.py calls :func:`compute` in the TensorFlow test process (which
also writes the weights) and runs this file under ``KERAS_BACKEND=torch`` / ``jax`` in a
subprocess that loads the same weights; the two results must agree. The inputs come from
a seeded NumPy generator, so both sides see the same numbers.

Usage: ``python tests/backend_parity.py WEIGHTS_DIR OUT.npz``
"""

import os
import sys

import keras
import numpy as np

from tfdldl import attention_maps, heads, layers, loss_weighting, metrics, models
from tfdldl.experiment import HeadConfig
from tfdldl.label_space import SCUT_FBP5500, LabelSpace

SPACE = SCUT_FBP5500  # Δl = 0.1
SIZE = 32
HEADS = ("distribution", "ranking", "regression")
# The learned-loss-weighting model (tests/test_loss_weighting.py): age + gender, plain SGD.
WEIGHTING_SPACE = LabelSpace(0.0, 20.0, 1.0, name="age")
WEIGHTING_SPECS = [HeadConfig(name="age", kind="distribution", loss="dldl_v2", lam=0.5),
                   HeadConfig(name="gender", kind="categorical", loss="masked_cross_entropy",
                              names=["male", "female"])]
LEARNING_RATE = 0.1


def inputs():
    """Fixed images [8, 32, 32, 3] (0..255), labels [8], per-sample σ [8]."""
    rng = np.random.default_rng(7)
    images = rng.uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.uniform(SPACE.minimum, SPACE.maximum, 8).astype(np.float32)
    sigmas = rng.uniform(0.05, 0.5, 8).astype(np.float32)
    return images, labels, sigmas


def compute(weights_dir: str, write_weights: bool) -> dict:
    """All compared quantities as float arrays, keyed by a readable name.

    Args:
      weights_dir: holds ``<head>.weights.h5`` for the three heads (and gender.weights.h5
      for the age + gender model with attention, loss_weighting.weights.h5 for the model
      with learned loss weights).
      write_weights: initialise the models from seeds and save their weights there (the
        reference side); otherwise load them.
    """
    images, labels, sigmas = inputs()
    targets = {"distribution": SPACE.gaussian(labels, sigmas), "value": labels,
               "ranking": SPACE.ranking(labels)}
    results, outputs = {}, {}
    for i, head in enumerate(HEADS):
        if write_weights:  # (set_random_seed would import TensorFlow on other backends)
            keras.utils.set_random_seed(i)
        model = models.build_model("tiny", SPACE, input_size=SIZE, head=head)
        path = os.path.join(weights_dir, f"{head}.weights.h5")
        if write_weights:
            model.save_weights(path)
        else:
            model.load_weights(path)
        for training in (True, False):  # BatchNorm: batch statistics, then moving ones
            out = model(images, training=training)
            for name, tensor in out.items():
                results[f"{head}/{name}/training={training}"] = keras.ops.convert_to_numpy(tensor)
        for name, tensor in out.items():  # inference outputs feed the losses and metrics
            outputs[f"value/{head}" if name == "value" else name] = tensor

    results.update(_gender_model(weights_dir, write_weights, images))
    results.update(_loss_weighting_step(weights_dir, write_weights))
    results["stddev"] = keras.ops.convert_to_numpy(
        layers.distribution_stddev(outputs["distribution"], SPACE.grid))
    for name in heads.LOSS_NAMES:
        for normalization in ("sum", "mean"):
            loss_fns, weights = heads.build_loss(name, SPACE, lam=0.7,
                                                  kl_normalization=normalization)
            head = heads.for_loss(name).kind
            total = 0.0
            for key, fn in loss_fns.items():
                pred = outputs[f"value/{head}"] if key == "value" else outputs[key]
                total += weights[key] * float(keras.ops.convert_to_numpy(
                    fn(targets[key], pred)))
            results[f"loss/{name}/{normalization}"] = np.float64(total)

    # Metrics on fixed predictions: an untrained model's values barely vary, which makes
    # Pearson ill-conditioned (float32 rounding differences between backends show up).
    value = labels + np.random.default_rng(8).normal(scale=0.4, size=8).astype(np.float32)
    for metric in (metrics.MeanAbsoluteError(), metrics.RootMeanSquaredError(),
                   metrics.CumulativeScore(0.5), metrics.PearsonCorrelation()):
        metric.update_state(labels[:5], value[:5])
        metric.update_state(labels[5:], value[5:])
        results[f"metric/{metric.name}"] = keras.ops.convert_to_numpy(metric.result())
    epsilon = metrics.EpsilonError()
    epsilon.update_state(np.stack([labels, sigmas], axis=1), value)
    results["metric/epsilon_error"] = keras.ops.convert_to_numpy(epsilon.result())
    return results


def _gender_model(weights_dir: str, write_weights: bool, images: np.ndarray) -> dict:
    """A model with the gender head, attention and gender fed into age: its outputs, its
    attention map and the masked gender cross-entropy (one unknown gender, -1)."""
    if write_weights:
        keras.utils.set_random_seed(len(HEADS))
    gender = heads.CategoricalHead("gender", ("m", "f"))
    model = models.build_model("tiny", SPACE, input_size=SIZE, categorical=[gender],
                               into_label=gender.name, attention=True)
    path = os.path.join(weights_dir, "gender.weights.h5")
    if write_weights:
        model.save_weights(path)
    else:
        model.load_weights(path)
    out = {f"gender/{name}": keras.ops.convert_to_numpy(tensor)
           for name, tensor in model(images, training=False).items()}
    out["gender/attention_map"] = attention_maps.attention_maps(
        attention_maps.map_model(model), images)
    loss = gender.build_loss()[0][gender.probability]
    codes = (np.arange(len(images)) % 3 - 1).astype(np.float32)  # -1, 0, 1, ...
    out["gender/loss"] = keras.ops.convert_to_numpy(
        loss(codes, out[f"gender/{gender.probability}"]))
    return out


def weighting_batch(count: int = 8):
    """Images float32 [count, SIZE, SIZE, 3] and the age + gender targets of the
    learned-loss-weighting model."""
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 20, count).astype(np.float32)
    targets = {"distribution": WEIGHTING_SPACE.gaussian(labels, 2.0), "value": labels,
               "gender_probability": (np.arange(count) % 2).astype(np.float32)}
    return rng.uniform(0, 255, (count, SIZE, SIZE, 3)).astype(np.float32), targets


def weighting_model(seed: bool = True):
    """Tiny age + gender model with learned loss weights, plain SGD (update = lr x gradient);
    ``seed``: initialise from seed 0 (set_random_seed imports TensorFlow on other backends)."""
    if seed:
        keras.utils.set_random_seed(0)
    model = models.build_model("tiny", WEIGHTING_SPACE, input_size=SIZE, width=0.25,
                               categorical=[heads.of_spec(WEIGHTING_SPECS[1])],
                               loss_weighting=[spec.name for spec in WEIGHTING_SPECS])
    losses, weights = heads.compile_losses(WEIGHTING_SPECS, WEIGHTING_SPACE,
                                           loss_weighting.layer_of(model))
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss=losses,
                  loss_weights=weights)
    return model


def head_losses(model, images, targets) -> np.ndarray:
    """[L_age, L_gender] of the unweighted head losses on the model's training-mode outputs."""
    outputs = model(images, training=True)
    fixed, weights = heads.compile_losses(WEIGHTING_SPECS, WEIGHTING_SPACE)
    per_output = {name: float(keras.ops.convert_to_numpy(loss(targets[name], outputs[name])))
                  * weights[name] for name, loss in fixed.items()}
    return np.array([per_output["distribution"] + per_output["value"],
                     per_output["gender_probability"]])


def _loss_weighting_step(weights_dir: str, write_weights: bool) -> dict:
    """One SGD step of the learned-loss-weighting model: the head losses [2] before it and
    the log-variances s [2] after it (the stated form: s = -lr·(1 - L))."""
    model = weighting_model(seed=write_weights)
    path = os.path.join(weights_dir, "loss_weighting.weights.h5")
    if write_weights:
        model.save_weights(path)
    else:
        model.load_weights(path)
    images, targets = weighting_batch()
    losses = head_losses(model, images, targets)
    model.fit(images, targets, batch_size=len(images), epochs=1, verbose=0, shuffle=False)
    return {"loss_weighting/head_losses": losses, "loss_weighting/log_variance":
            keras.ops.convert_to_numpy(loss_weighting.layer_of(model).log_variance)}


def main(weights_dir: str, out_path: str) -> None:
    results = compute(weights_dir, write_weights=False)
    results["backend"] = np.array(keras.backend.backend())
    # The core must not need TensorFlow on another backend.
    results["tensorflow_imported"] = np.array("tensorflow" in sys.modules)
    np.savez(out_path, **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
