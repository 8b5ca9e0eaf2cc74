"""The host (NumPy/OpenCV) pipeline reproduces the tf.data pipeline's decoding and augmentation."""

import dataclasses
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data_prep import synthetic
from tfdldl import augment, host_pipeline, tfrecord_reader
from tfdldl import example_schema as schema
from tfdldl.experiment import AugmentConfig
from tfdldl.label_space import AGE
from tfdldl.manifest import read_manifest

OFF = AugmentConfig(enabled=True, flip=False, grayscale_probability=0.0, rescale=False,
                    rotation_degrees=0.0, color_jitter=0.0)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("host"))
    synthetic.write_tfrecord_set(root, AGE, {"train": 21}, image_size=40, shards_per_split=2)
    return tfrecord_reader.read_split(read_manifest(root), "train")


def _smooth_image(size=40, seed=0):
    """A float32 RGB image without sharp edges (so resampling differences stay small)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (size // 4, size // 4, 3)).astype(np.float32)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 255)


def test_luma_is_the_tensorflow_pipelines():
    np.testing.assert_array_equal(host_pipeline.LUMA, np.float32(augment.LUMA))


def test_decode_matches_tensorflow_decode_and_resize(faces):
    """OpenCV decodes with libjpeg's accurate integer DCT: TF's INTEGER_ACCURATE, exactly.

    TF's default (INTEGER_FAST) differs by about 1 grey level on average.
    """
    jpeg = faces.jpegs[0]
    ours = host_pipeline.decode_image(jpeg, 40)
    decoded = tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE")
    np.testing.assert_array_equal(ours, decoded.numpy())
    assert np.abs(ours - tf.io.decode_jpeg(jpeg, channels=3).numpy().astype(int)).mean() < 3
    ours = host_pipeline.decode_image(jpeg, 56).astype(np.float32)
    theirs = tf.image.resize(tf.cast(decoded, tf.float32), [56, 56], method="bilinear").numpy()
    assert np.abs(ours - theirs).mean() < 0.6


def test_affine_matrix_is_the_tensorflow_transform():
    """Recover each TF transform's flip, scale, angle and shift; our formula rebuilds it."""
    size = 40
    transforms = augment.random_transforms(tf.constant(16), tf.constant(size),
                                           tf.constant([3, 4], tf.int64), True, (0.5, 1.0),
                                           15.0).numpy()
    for a0, a1, a2, b0, b1, b2, _, _ in transforms:
        scale = 1.0 / math.hypot(b0, b1)
        angle = math.atan2(-b0, b1)
        mirror = 1.0 if abs(a0 - b1) < 1e-6 else -1.0
        centre = (size - 1) / 2
        # a2 = c - a0 x0 - a1 y0 ; b2 = c - b0 x0 - b1 y0  ->  solve for x0, y0
        x0, y0 = np.linalg.solve([[a0, a1], [b0, b1]], [centre - a2, centre - b2])
        ours = host_pipeline.affine_matrix(size, mirror, scale, angle,
                                           (x0 - centre, y0 - centre))
        np.testing.assert_allclose(ours.ravel(), [a0, a1, a2, b0, b1, b2], atol=1e-4)
        assert 0.5 <= scale <= 1.0 and abs(math.degrees(angle)) <= 15.0


@pytest.mark.parametrize("fill_mode", ["constant", "reflect"])
def test_warp_matches_tensorflow_projective_transform(fill_mode):
    image = _smooth_image()
    rng = np.random.default_rng(5)
    config = AugmentConfig(rescale_min=0.5, rescale_max=1.3, translate=0.05)
    matrices = [host_pipeline.random_affine(rng, 40, config) for _ in range(6)]
    theirs = augment.apply_transforms(
        tf.constant(np.stack([image] * 6)),
        tf.constant([np.r_[m.ravel(), 0, 0] for m in matrices], tf.float32), fill_mode).numpy()
    for matrix, expected in zip(matrices, theirs):
        ours = host_pipeline.warp(image, matrix, fill_mode)
        assert np.abs(ours - expected).mean() < 0.5, "cv2 and TF resample differently"
        assert np.abs(ours - expected).max() < 25  # border pixels: 1/32 px grid in cv2


def test_one_colour_map_equals_tensorflow_jitter_then_grayscale():
    images = np.stack([_smooth_image(seed=s) for s in range(4)]).round()
    seed = tf.constant([1, 2], tf.int64)
    jittered = augment.color_jitter(tf.constant(images), 0.4, seed)
    grays = tf.broadcast_to(augment.grayscale(jittered), jittered.shape)
    factors = tf.random.stateless_uniform([3, 4], seed, 0.6, 1.4).numpy()
    for gray, expected in ((False, jittered), (True, grays)):
        expected = np.clip(expected.numpy(), 0, 255)
        for i in range(4):
            image = images[i].astype(np.uint8)
            matrix = host_pipeline.photometric_matrix(np.asarray(cv2.mean(image)[:3]),
                                                      *factors[:, i], gray)
            ours = cv2.transform(image, matrix)
            assert ours.dtype == np.uint8
            error = np.abs(ours - expected[i])
            # rounding to uint8 plus cv2.transform's 10-bit fixed-point coefficients
            assert error.max() <= 1.0 and error.mean() < 0.3, (error.max(), error.mean())


def test_augment_image_parts(faces):
    image = host_pipeline.decode_image(faces.jpegs[1], 40)
    rng = np.random.default_rng(0)
    assert np.array_equal(host_pipeline.augment_image(image, rng, OFF), image)
    assert host_pipeline.augment_image(image, rng, AugmentConfig(enabled=False)) is image
    flips = [host_pipeline.augment_image(image, rng, dataclasses.replace(OFF, flip=True))
             for _ in range(40)]
    mirrored = sum(np.array_equal(out, image[:, ::-1]) for out in flips)
    assert sum(np.array_equal(out, image) for out in flips) + mirrored == 40
    assert 8 <= mirrored <= 32
    gray = host_pipeline.augment_image(image, rng, dataclasses.replace(
        OFF, grayscale_probability=1.0))
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    full = host_pipeline.augment_image(image, rng, AugmentConfig())
    assert full.dtype == np.uint8 and full.shape == image.shape and not np.array_equal(full, image)


def test_epoch_order_shuffles_per_epoch_and_drops_the_remainder():
    first = host_pipeline.epoch_order(21, 4, 5, seed=0, epoch=0)
    assert first.shape == (5, 4) and len(np.unique(first)) == 20
    assert not np.array_equal(first, host_pipeline.epoch_order(21, 4, 5, seed=0, epoch=1))
    assert np.array_equal(first, host_pipeline.epoch_order(21, 4, 5, seed=0, epoch=0))
    longer = host_pipeline.epoch_order(21, 4, 12, seed=0, epoch=0)  # more than one pass
    assert longer.shape == (12, 4) and np.array_equal(longer[:5], first)


def test_stream_is_reproducible_whatever_the_worker_count(faces):
    common = dict(batch_size=4, outputs=["distribution", "value", "ranking"], label_space=AGE,
                  image_size=32, augment=AugmentConfig(), seed=7)
    with host_pipeline.HostBatches(faces, workers=2, **common) as batches:
        two = list(batches.stream(0, 2))
        assert batches.wait_seconds > 0
    with host_pipeline.HostBatches(faces, workers=1, prefetch=1, **common) as batches:
        one = list(batches.stream(1, 2))
    assert len(two) == 2 * batches.steps_per_epoch == 10
    for (images_a, targets_a), (images_b, targets_b) in zip(two[5:], one):
        assert np.array_equal(images_a, images_b)
        for name in targets_a:
            np.testing.assert_array_equal(targets_a[name], targets_b[name])
    images, targets = two[0]
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    assert targets["distribution"].shape == (4, AGE.num_classes)
    np.testing.assert_array_equal(targets["ranking"], AGE.ranking(targets["value"]))
    # each target row belongs to one record: its label is its distribution's mode
    np.testing.assert_array_equal(targets["value"],
                                  AGE.grid[np.argmax(targets["distribution"], axis=1)])


def test_refusals_are_clear(faces):
    with pytest.raises(host_pipeline.HostPipelineError, match="fewer than one batch of 64"):
        host_pipeline.HostBatches(faces, 64, ["value"], AGE, 32, None)
    degraded = AugmentConfig(blur_probability=0.2, noise_std=4.0)
    with pytest.raises(host_pipeline.HostPipelineError,
                       match="augment.blur_probability, augment.noise_std: .* TensorFlow"):
        host_pipeline.HostBatches(faces, 4, ["value"], AGE, 32, degraded)
    with pytest.raises(host_pipeline.HostPipelineError, match="record 3: not an image"):
        host_pipeline.decode_image(b"not an image", 32, where="record 3")
    broken = dataclasses.replace(faces, columns={**faces.columns,
                                                 schema.IMAGE: [b"broken"] * len(faces)})
    with host_pipeline.HostBatches(broken, 4, ["value"], AGE, 32, None, workers=1) as batches:
        with pytest.raises(host_pipeline.HostPipelineError, match="record 10: not an image"):
            next(batches.stream())


def test_host_pipeline_imports_no_tensorflow():
    code = ("import sys, tfdldl.host_pipeline, tfdldl.tfrecord_reader; "
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
