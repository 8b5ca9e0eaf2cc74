"""Losses against NumPy references on random inputs (per-sample σ, Δl ≠ 1)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdldl import heads, losses, models
from tfdldl.label_space import AGE, SCUT_FBP5500, LabelSpace

SPACE = SCUT_FBP5500  # Δl = 0.1, K = 41
N = 12


def random_batch(space=SPACE, seed=0):
    """Targets with per-sample σ (two of them 0: one-hot) and random softmax predictions."""
    rng = np.random.default_rng(seed)
    labels = rng.uniform(space.minimum, space.maximum, N).astype(np.float32)
    sigmas = rng.uniform(0.5, 5.0, N) * space.step
    sigmas[:2] = 0.0
    logits = rng.normal(scale=1.5, size=(N, space.num_classes))  # q >> the 1e-7 clip
    q = np.exp(logits - logits.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    return labels, space.gaussian(labels, sigmas), q.astype(np.float32), rng


def reference_kl(p, q):
    """Σ_k p_k log(p_k / q_k) per sample, with 0 log 0 = 0."""
    p, q = p.astype(np.float64), q.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=1)


def value(loss, y_true, y_pred):
    return float(loss(y_true, y_pred))


@pytest.mark.parametrize("space", [SPACE, AGE, LabelSpace(-1.0, 1.0, 0.05)])
def test_kl_sum_and_mean_conventions(space):
    labels, p, q, _ = random_batch(space)
    k = space.num_classes
    per_sample = reference_kl(p, q)
    assert per_sample.min() > 0
    kl_sum = losses.LabelDistributionKL(k, "sum")
    kl_mean = losses.LabelDistributionKL(k, "mean")
    # "sum": sum over classes, mean over the batch (Keras' KLDivergence).
    np.testing.assert_allclose(value(kl_sum, p, q), per_sample.mean(), rtol=1e-5)
    np.testing.assert_allclose(value(keras.losses.KLDivergence(), p, q), per_sample.mean(),
                               rtol=1e-4)
    # "mean": the Torch original's mean over all N*K elements, K times smaller.
    np.testing.assert_allclose(value(kl_mean, p, q), per_sample.sum() / (N * k), rtol=1e-5)


def test_dex_uses_the_argmax_of_the_target_distribution():
    labels, p, q, _ = random_batch()
    target_class = SPACE.nearest_index(labels)
    expected = -np.log(q[np.arange(N), target_class].astype(np.float64)).mean()
    np.testing.assert_allclose(value(losses.ArgmaxCrossEntropy(41), p, q), expected, rtol=1e-5)


def test_ranking_binary_cross_entropy():
    labels, _, _, rng = random_batch()
    targets = SPACE.ranking(labels)
    q = rng.uniform(0.01, 0.99, size=targets.shape).astype(np.float32)
    bce = -(targets * np.log(q) + (1 - targets) * np.log(1 - q)).mean(axis=1).mean()
    np.testing.assert_allclose(value(losses.RankingCrossEntropy(41), targets, q), bce, rtol=1e-5)


def test_absolute_and_squared_errors():
    labels, _, _, rng = random_batch()
    pred = labels + rng.normal(scale=0.7, size=N).astype(np.float32)
    np.testing.assert_allclose(value(losses.AbsoluteError(), labels, pred),
                               np.abs(pred - labels).mean(), rtol=1e-5)
    np.testing.assert_allclose(value(losses.SquaredError(), labels[:, None], pred),
                               ((pred - labels) ** 2).mean(), rtol=1e-5)


def test_losses_are_finite_with_zero_probabilities():
    p = SPACE.gaussian([1.0, 5.0], 0.0)  # one-hots: exact zeros in the target
    q = np.roll(p, 3, axis=1)            # zero probability on the true class
    for loss in (losses.LabelDistributionKL(41), losses.ArgmaxCrossEntropy(41)):
        assert np.isfinite(value(loss, p, q))
    logits = tf.Variable(np.full((2, 41), -30.0, np.float32) + 60.0 * q)
    with tf.GradientTape() as tape:
        kl = losses.LabelDistributionKL(41)(p, tf.nn.softmax(logits))
    assert np.all(np.isfinite(tape.gradient(kl, logits).numpy()))


@pytest.mark.parametrize("name, lam, normalization", [
    ("dldl_v2", 1.0, "sum"), ("dldl_v2", 0.3, "mean"), ("dldl", 1.0, "mean"), ("er", 1.0, "sum"),
    ("dex", 1.0, "sum"), ("mr_l1", 1.0, "sum"), ("mr_l2", 1.0, "sum"), ("ranking", 1.0, "sum"),
])
def test_compiled_model_loss_matches_the_paper_formula(name, lam, normalization):
    """model.evaluate's total loss = the NumPy formula on the model's own predictions."""
    labels, _, _, rng = random_batch()
    sigmas = rng.uniform(0.1, 0.5, N)
    targets = {"distribution": SPACE.gaussian(labels, sigmas), "value": labels,
               "ranking": SPACE.ranking(labels)}
    keras.utils.set_random_seed(0)
    model = models.build_model("tiny", SPACE, input_size=32, head=heads.for_loss(name).kind)
    loss, weights = heads.build_loss(name, SPACE, lam=lam, kl_normalization=normalization)
    model.compile(loss=loss, loss_weights=weights)
    images = rng.uniform(0, 255, (N, 32, 32, 3)).astype(np.float32)
    out = {k: np.asarray(v, np.float64) for k, v in model(images, training=False).items()}
    y = labels.astype(np.float64)
    kl = reference_kl(targets["distribution"], out.get("distribution", np.ones((N, 41))))
    kl = kl.mean() / (41 if normalization == "mean" else 1)
    l1 = np.abs(out["value"] - y).mean()
    expected = {
        "dldl_v2": lambda: kl + lam * l1,
        "dldl": lambda: kl,
        "er": lambda: l1,
        "dex": lambda: -np.log(out["distribution"][np.arange(N),
                                                   SPACE.nearest_index(labels)]).mean(),
        "mr_l1": lambda: l1,
        "mr_l2": lambda: ((out["value"] - y) ** 2).mean(),
        "ranking": lambda: -np.mean(targets["ranking"] * np.log(out["ranking"])
                                    + (1 - targets["ranking"]) * np.log(1 - out["ranking"])),
    }[name]()
    given = {k: targets[k] for k in model.output_names}
    result = model.evaluate(images, given, batch_size=N, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-4)


def test_dldl_v2_loss_is_the_same_under_mirrored_strategy():
    """Two replicas, half a batch each: Keras' reduction must give the single-device loss."""
    labels, p, _, rng = random_batch()
    images = rng.uniform(0, 255, (N, 32, 32, 3)).astype(np.float32)
    keras.utils.set_random_seed(1)
    model = models.build_model("tiny", SPACE, input_size=32)
    weights = model.get_weights()
    loss, loss_weights = heads.build_loss("dldl_v2", SPACE, lam=0.5, kl_normalization="mean")
    model.compile(loss=loss, loss_weights=loss_weights)
    targets = {"distribution": p, "value": labels}
    single = model.evaluate(images, targets, batch_size=N, verbose=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = models.build_model("tiny", SPACE, input_size=32)
        mirrored.set_weights(weights)
        loss, loss_weights = heads.build_loss("dldl_v2", SPACE, lam=0.5, kl_normalization="mean")
        mirrored.compile(loss=loss, loss_weights=loss_weights)
    assert strategy.num_replicas_in_sync == 2
    np.testing.assert_allclose(mirrored.evaluate(images, targets, batch_size=N, verbose=0),
                               single, rtol=1e-4)


def test_build_loss_tables():
    assert {name: heads.for_loss(name).kind for name in heads.LOSS_NAMES} == {
        "dldl_v2": "distribution", "dldl": "distribution", "er": "distribution",
        "dex": "distribution", "mr_l1": "regression", "mr_l2": "regression",
        "ranking": "ranking"}
    loss, weights = heads.build_loss("dldl_v2", AGE, lam=0.25)
    assert set(loss) == {"distribution", "value"} and weights == {"distribution": 1.0,
                                                                  "value": 0.25}


def test_bad_choices_are_explained():
    with pytest.raises(ValueError, match="unknown loss 'l3'; choose one of dldl_v2"):
        heads.build_loss("l3", AGE)
    with pytest.raises(ValueError, match="unknown kl_normalization 'batch'"):
        heads.build_loss("dldl", AGE, kl_normalization="batch")
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        heads.build_loss("dldl_v2", AGE, lam=-1)
    p = AGE.gaussian([20.0], 2.0)
    with pytest.raises(ValueError, match="has 101 entries per sample but the label space has 41"):
        losses.LabelDistributionKL(41)(p, p)


def test_losses_serialise_with_their_settings():
    kl = losses.LabelDistributionKL(41, "mean")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(kl))
    assert isinstance(restored, losses.LabelDistributionKL)
    assert (restored.num_classes, restored.kl_normalization) == (41, "mean")
