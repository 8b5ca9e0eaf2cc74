"""tfdldl.input_pipeline and tfdldl.augment on real TFRecords (synthetic faces)."""

import numpy as np
import pytest
import tensorflow as tf

from data_prep.synthetic import write_tfrecord_set
from tfdldl import augment, input_pipeline
from tfdldl.experiment import AugmentConfig
from tfdldl.label_space import AGE, SCUT_FBP5500, LabelSpace
from tfdldl.manifest import ManifestError, read_manifest

SPACE = LabelSpace(0.0, 40.0, 1.0, name="age")
OUTPUTS = ["distribution", "value", "ranking"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    write_tfrecord_set(str(root), SPACE, {"train": 40, "val": 10}, image_size=40,
                       shards_per_split=3)
    return read_manifest(str(root))


def _stored(manifest, split):
    """Labels, distributions and decoded images in file order, read with plain TF."""
    labels, distributions, images = [], [], []
    for path in manifest.shards(split):
        for record in tf.data.TFRecordDataset(path):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            labels.append(feature["label"].float_list.value[0])
            distributions.append(list(feature["distribution"].float_list.value))
            images.append(tf.io.decode_jpeg(feature["image/encoded"].bytes_list.value[0],
                                            dct_method="INTEGER_ACCURATE"))  # as training
    return np.array(labels, np.float32), np.array(distributions, np.float32), images


def test_eval_stream_gives_file_order_images_and_all_targets(manifest):
    dataset = input_pipeline.make_dataset(manifest, "val", 4, OUTPUTS, training=False,
                                          image_size=32, label_space=SPACE)
    batches = list(dataset.as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [4, 4, 2]  # the last batch is kept
    images = np.concatenate([b[0] for b in batches])
    targets = {k: np.concatenate([b[1][k] for b in batches]) for k in OUTPUTS}
    labels, distributions, decoded = _stored(manifest, "val")
    np.testing.assert_array_equal(targets["value"], labels)
    np.testing.assert_array_equal(targets["distribution"], distributions)
    np.testing.assert_array_equal(targets["ranking"], SPACE.ranking(labels))
    assert images.shape == (10, 32, 32, 3) and images.dtype == np.float32
    expected = tf.image.resize(tf.cast(decoded[0], tf.float32), [32, 32]).numpy()
    np.testing.assert_allclose(images[0], expected, atol=1e-4)


@pytest.mark.parametrize("in_memory", [False, True], ids=["streamed", "in_memory"])
def test_training_stream_is_a_pure_function_of_seed_epoch_and_step(manifest, in_memory):
    def stream(**kwargs):
        dataset = input_pipeline.make_dataset(
            manifest, "train", 8, ["value"], training=True, augment_cfg=AugmentConfig(),
            image_size=32, seed=3, deterministic=True, steps_per_epoch=5,
            in_memory=in_memory, **kwargs)
        return list(dataset.as_numpy_iterator())

    full = stream(epochs=3)
    assert len(full) == 15 and all(len(b[0]) == 8 for b in full)
    # A resumed run (epoch 1, step 2 done) sees exactly the rest of the same stream.
    resumed = stream(first_epoch=1, epochs=3, skip_batches=2)
    assert len(resumed) == len(full) - 7
    for (a_images, a_targets), (b_images, b_targets) in zip(full[7:], resumed):
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_targets["value"], b_targets["value"])
    # Every epoch is one pass over 40 records (5 x 8): each label appears once per epoch.
    labels, _, _ = _stored(manifest, "train")
    for epoch in range(3):
        seen = np.concatenate([full[epoch * 5 + i][1]["value"] for i in range(5)])
        np.testing.assert_array_equal(np.sort(seen), np.sort(labels))
    # Epochs are shuffled differently; a different seed gives a different stream.
    first = np.concatenate([full[i][1]["value"] for i in range(5)])
    second = np.concatenate([full[5 + i][1]["value"] for i in range(5)])
    assert not np.array_equal(first, second)


def test_in_memory_faces_are_the_stored_faces(manifest):
    """Without augmentation, an in-memory batch holds the stored faces (decoded once,
    rounded to uint8) with their own targets."""
    batch_images, batch_targets = next(iter(input_pipeline.make_dataset(
        manifest, "train", 40, ["value", "distribution"], training=True, augment_cfg=None,
        image_size=40, steps_per_epoch=1, in_memory=True)))
    labels, distributions, decoded = _stored(manifest, "train")
    stored = np.stack([image.numpy() for image in decoded]).astype(np.float32)
    order = [int(np.flatnonzero((stored == image).all(axis=(1, 2, 3)))[0])
             for image in batch_images.numpy()]
    assert sorted(order) == list(range(40))  # each stored face once
    np.testing.assert_array_equal(batch_targets["value"].numpy(), labels[order])
    np.testing.assert_array_equal(batch_targets["distribution"].numpy(), distributions[order])


def test_flip_only_augmentation_mirrors_exactly_about_half(manifest):
    images = next(iter(input_pipeline.make_dataset(manifest, "train", 16, ["value"],
                                                   training=False)))[0]
    config = AugmentConfig(rescale=False, rotation_degrees=0.0, color_jitter=0.0,
                           grayscale_probability=0.0)
    out = augment.augment_batch(images, tf.constant([1, 2]), config).numpy()
    plain = [np.allclose(o, i, atol=1e-3) for o, i in zip(out, images.numpy())]
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-3) for o, i in zip(out, images.numpy())]
    assert all(p or m for p, m in zip(plain, mirrored))
    assert 0 < sum(mirrored) < len(out)


def test_full_augmentation_stays_in_range_and_varies(manifest):
    images = next(iter(input_pipeline.make_dataset(manifest, "train", 16, ["value"],
                                                   training=False, image_size=32)))[0]
    config = AugmentConfig(grayscale_probability=1.0)
    out = augment.augment_batch(images, tf.constant([5, 6]), config).numpy()
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-3)  # all grayscale
    again = augment.augment_batch(images, tf.constant([5, 6]), config).numpy()
    np.testing.assert_array_equal(out, again)  # stateless: same seed, same result
    other = augment.augment_batch(images, tf.constant([5, 7]), config).numpy()
    assert not np.allclose(out, other)


def test_geometry_rotates_about_the_centre_and_shrinks_inside_the_window(manifest):
    images = next(iter(input_pipeline.make_dataset(manifest, "train", 16, ["value"],
                                                   training=False, image_size=33)))[0]
    rotate = AugmentConfig(flip=False, rescale=False, color_jitter=0.0,
                           grayscale_probability=0.0)
    rotated = augment.augment_batch(images, tf.constant([1, 1]), rotate).numpy()
    np.testing.assert_allclose(rotated[:, 16, 16], images.numpy()[:, 16, 16], atol=1e-3)
    assert not np.allclose(rotated, images.numpy())
    # Scale 0.5: the face shrinks to 16-17 px placed inside the 33 px window; corners are fill.
    transforms = augment.random_transforms(16, 33, tf.constant([1, 2], tf.int64), False,
                                           (0.5, 0.5), 0.0)
    shrunk = augment.apply_transforms(images, transforms).numpy()
    assert np.all(shrunk[:, 0, 0] == 0) and np.all(shrunk[:, -1, -1] == 0)
    covered = (shrunk.sum(axis=-1) > 0).mean(axis=(1, 2))
    assert np.all((covered > 0.2) & (covered < 0.3))  # about (17/33)² of the window


def test_disabled_augmentation_is_the_identity(manifest):
    images = next(iter(input_pipeline.make_dataset(manifest, "val", 4, ["value"],
                                                   training=False)))[0]
    out = augment.augment_batch(images, tf.constant([0, 0]), AugmentConfig(enabled=False))
    np.testing.assert_array_equal(out.numpy(), images.numpy())


def test_bad_requests_are_manifest_errors(manifest, tmp_path):
    with pytest.raises(ManifestError, match="label space"):
        input_pipeline.make_dataset(manifest, "val", 4, OUTPUTS, training=False,
                                    label_space=AGE)
    with pytest.raises(ManifestError, match="no split 'test'"):
        input_pipeline.make_dataset(manifest, "test", 4, OUTPUTS, training=False)
    with pytest.raises(ManifestError, match="fewer than one batch"):
        input_pipeline.steps_per_epoch(manifest, "val", 64)
    with pytest.raises(ManifestError, match="no target"):
        input_pipeline.make_dataset(manifest, "val", 4, ["logits"], training=False)
    empty = write_tfrecord_set(str(tmp_path / "empty"), SCUT_FBP5500,
                               {"train": 8, "val": 0}, image_size=32)
    with pytest.raises(ManifestError, match="empty"):
        input_pipeline.make_dataset(read_manifest(empty), "val", 4, ["value"],
                                    training=False)
