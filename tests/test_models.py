"""ThinAgeNet / TinyAgeNet: layout, parameter counts, heads, custom layers, saving."""

import keras
import numpy as np
import pytest

from tfdldl import layers, models
from tfdldl.label_space import AGE, SCUT_FBP5500


@pytest.mark.parametrize("arch, expected", [("thin", 3_712_453), ("tiny", 936_981)])
def test_parameter_counts_at_224_match_the_paper(arch, expected):
    """The paper: ThinAgeNet 3.7M, TinyAgeNet 0.9M parameters (224 px, K = 101)."""
    model = models.build_model(arch, AGE)
    assert model.count_params() == expected
    # Hybrid pooling sees conv5's 14x14 map and averages the 7x7 left after its max-pool.
    assert tuple(model.get_layer("hybrid_pool").input.shape[1:3]) == (14, 14)


def test_vgg_layout_without_conv_bias():
    model = models.build_model("tiny", AGE, input_size=32)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128,
                                          128, 128, 128]
    assert all(not c.use_bias and c.kernel_size == (3, 3) for c in convs)
    assert all(isinstance(model.get_layer(f"{c.name}_bn"), keras.layers.BatchNormalization)
               for c in convs)
    assert len([l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]) == 4


def test_gap_averages_conv5_directly():
    model = models.build_model("tiny", AGE, input_size=64, pooling="gap")
    assert tuple(model.get_layer("gap").input.shape[1:3]) == (4, 4)
    assert model.count_params() == models.build_model("tiny", AGE, input_size=64).count_params()


@pytest.mark.parametrize("head, shapes", [
    ("distribution", {"distribution": (3, 41), "value": (3,)}),
    ("ranking", {"ranking": (3, 40), "value": (3,)}),
    ("regression", {"value": (3,)}),
])
@pytest.mark.parametrize("pooling", ["hybrid", "gap"])
def test_heads_give_the_named_outputs(head, shapes, pooling):
    model = models.build_model("tiny", SCUT_FBP5500, input_size=40, pooling=pooling, head=head)
    images = np.random.default_rng(0).uniform(0, 255, (3, 40, 40, 3)).astype(np.float32)
    outputs = model(images)
    assert sorted(model.output_names) == sorted(shapes)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == shapes
    assert models.label_space_of(model) == SCUT_FBP5500


def test_values_follow_each_head_rule():
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    grid = SCUT_FBP5500.grid

    dist = models.build_model("tiny", SCUT_FBP5500, input_size=32)
    out = {k: np.asarray(v) for k, v in dist(images).items()}
    np.testing.assert_allclose(out["distribution"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["value"], out["distribution"] @ grid, rtol=1e-5)

    rank = models.build_model("tiny", SCUT_FBP5500, input_size=32, head="ranking")
    out = {k: np.asarray(v) for k, v in rank(images).items()}
    np.testing.assert_allclose(out["value"], 1.0 + 0.1 * (out["ranking"] > 0.5).sum(axis=1),
                               atol=1e-5)

    reg = models.build_model("tiny", SCUT_FBP5500, input_size=32, head="regression")
    raw = keras.Model(reg.input, reg.get_layer("regression").output)(images)
    np.testing.assert_allclose(reg(images)["value"], 3.0 + 2.0 * np.asarray(raw)[:, 0],
                               rtol=1e-5)


def test_value_layers_have_no_weights_and_input_is_rescaled_inside():
    model = models.build_model("tiny", AGE, input_size=32)
    for name in ("value", "hybrid_pool"):
        assert model.get_layer(name).weights == []
    rescale = model.get_layer("rescale")
    np.testing.assert_allclose(np.asarray(rescale(np.array([[0.0, 127.5, 255.0]]))),
                               [[-1.0, 0.0, 1.0]])


def test_expectation_and_stddev_against_numpy():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(41), size=6).astype(np.float32)
    grid = SCUT_FBP5500.grid.astype(np.float64)
    mean = p @ grid
    std = np.sqrt(((grid[None] - mean[:, None]) ** 2 * p).sum(axis=1))
    expectation = layers.Expectation.from_label_space(SCUT_FBP5500)
    np.testing.assert_allclose(np.asarray(expectation(p)), mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(layers.distribution_stddev(p, grid)), std, rtol=1e-4)
    # A one-hot has zero spread, not NaN.
    one_hot = np.eye(41, dtype=np.float32)[[0, 20]]
    np.testing.assert_allclose(np.asarray(layers.distribution_stddev(one_hot, grid)), 0.0,
                               atol=1e-3)


def test_hybrid_pooling_is_max_then_average():
    x = np.random.default_rng(4).normal(size=(2, 7, 6, 5)).astype(np.float32)
    expected = x[:, :6].reshape(2, 3, 2, 3, 2, 5).max(axis=(2, 4)).mean(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(layers.HybridPooling()(x)), expected, rtol=1e-5)


def test_saved_model_keeps_weights_and_label_space(tmp_path):
    model = models.build_model("tiny", SCUT_FBP5500, input_size=32, head="ranking")
    images = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert models.label_space_of(loaded) == SCUT_FBP5500
    np.testing.assert_allclose(np.asarray(loaded(images)["ranking"]),
                               np.asarray(model(images)["ranking"]), rtol=1e-6)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="at least 32 px"):
        models.build_model("tiny", AGE, input_size=16)
    with pytest.raises(ValueError, match="unknown arch 'vgg'; choose one of thin, tiny"):
        models.build_model("vgg", AGE)
    with pytest.raises(ValueError, match="unknown head"):
        models.build_model("tiny", AGE, head="softmax")
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="no tfdldl label-space layer"):
        models.label_space_of(plain)


def test_width_multiplier_scales_channels():
    model = models.build_model("tiny", AGE, input_size=32, width=0.5)
    assert model.get_layer("conv1_1").filters == 8 and model.get_layer("conv5_3").filters == 64


@pytest.mark.parametrize("arch, channels", [("thin", 256), ("tiny", 128)])
def test_attention_sits_before_pooling_and_follows_cbam(arch, channels):
    """CBAM on the last conv map: channel weights a = σ(MLP(avg) + MLP(max)) and the spatial
    map m = σ(BN(conv7x7([mean_c, max_c] of a⊙F))), both in (0, 1); output (1 + a⊙m)⊙F."""
    model = models.build_model(arch, AGE, input_size=64, attention=True)
    attention = model.get_layer("attention")
    assert model.get_layer("conv5_3_relu").output is attention.input
    assert attention.count_params() == 2 * channels * (channels // 8) + channels + channels // 8 \
        + 2 * 49 + 4
    features = np.random.default_rng(0).uniform(0, 2, (2, 4, 4, channels)).astype(np.float32)
    weights = keras.ops.convert_to_numpy(attention.channel_weights(features))
    spatial = keras.ops.convert_to_numpy(attention.spatial_map(features * weights))
    assert (spatial < 1).all() and (weights * spatial).std() > 0
    assert weights.shape == (2, 1, 1, channels) and spatial.shape == (2, 4, 4, 1)
    assert (weights > 0).all() and (weights < 1).all() and (spatial > 0).all()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(attention(features)),
                               features * (1 + weights * spatial), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        layers.ConvBlockAttention(kernel_size=4)
