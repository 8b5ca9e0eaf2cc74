"""Training augmentation on batches of images, with plain TensorFlow ops (no tensorflow-addons).

All randomness is stateless: a batch's augmentation is a pure function of its images and
a seed tensor int32/int64 [2], so a run is reproducible and a resumed run sees the same
augmentation as an uninterrupted one.

The paper's set (DLDL-v2, after fb.resnet.torch): horizontal flip, random rescale + random
crop, rotation ±15°, colour jitter 0.4 (brightness, contrast, saturation), grayscale with
p = 0.5. The geometric parts (flip, rescale, crop offset, rotation) are composed into ONE
projective transform per image and applied with a single bilinear resampling
(``ImageProjectiveTransformV3``), so a batch is resampled once however many are enabled.

Images are float32 [N, S, S, 3], RGB in 0..255, in and out.
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfdldl.experiment import AugmentConfig

# ITU-R BT.601 luma weights (as tf.image.rgb_to_grayscale).
LUMA = (0.2989, 0.5870, 0.1140)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Apply the enabled augmentations of ``config`` to a batch.

    Args:
      images: float32 [N, S, S, 3], RGB 0..255.
      seed: int [2], the stateless seed of this batch.
      config: which parts are on and their strengths.
    Returns:
      float32 [N, S, S, 3], RGB clipped to 0..255.
    """
    if not config.enabled:
        return images
    geometry_seed, gray_seed, jitter_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3))
    if config.flip or config.rescale or config.rotation_degrees > 0:
        scale_range = (config.rescale_min, config.rescale_max) if config.rescale else (1.0, 1.0)
        transforms = random_transforms(tf.shape(images)[0], tf.shape(images)[1], geometry_seed,
                                       config.flip, scale_range, config.rotation_degrees)
        images = apply_transforms(images, transforms)
    if config.color_jitter > 0:
        images = color_jitter(images, config.color_jitter, jitter_seed)
    if config.grayscale_probability > 0:
        images = random_grayscale(images, config.grayscale_probability, gray_seed)
    return tf.clip_by_value(images, 0.0, 255.0)


def random_transforms(count: tf.Tensor, size: tf.Tensor, seed: tf.Tensor, flip: bool,
                      scale_range: tuple[float, float], rotation_degrees: float) -> tf.Tensor:
    """Per-image projective transforms (output pixel -> input pixel), float32 [N, 8].

    Each image is mirrored with p = 0.5 (when ``flip``), scaled by s = U(scale_range) about
    its centre, rotated by U(-rotation, +rotation) degrees and shifted by a random offset
    that keeps the S x S window inside the scaled image (s > 1) or the scaled image inside
    the window (s < 1): the "random crop".

    Args:
      count: N.
      size: S, the square image side in pixels.
      seed: int [2].
      flip: whether to mirror half of the images.
      scale_range: (min, max) scale factors; (1, 1) disables rescaling.
      rotation_degrees: maximum absolute rotation.
    """
    flip_seed, scale_seed, angle_seed, shift_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=4))
    ones = tf.ones([count], tf.float32)
    side = tf.cast(size, tf.float32)
    centre = (side - 1.0) / 2.0
    mirror = ones
    if flip:
        mirror = tf.where(tf.random.stateless_uniform([count], flip_seed) < 0.5, -ones, ones)
    scale = tf.random.stateless_uniform([count], scale_seed, scale_range[0], scale_range[1])
    limit = math.radians(rotation_degrees)
    angle = tf.random.stateless_uniform([count], angle_seed, -limit, limit)
    slack = tf.abs(1.0 - scale) * side / 2.0
    shift = (tf.random.stateless_uniform([count, 2], shift_seed, -1.0, 1.0)
             * slack[:, None])
    # Inverse map: input = R(-angle) (output - centre - shift) / scale, then mirrored in x.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1 = mirror * cos, mirror * sin
    b0, b1 = -sin, cos
    x0, y0 = centre + shift[:, 0], centre + shift[:, 1]
    a2 = centre - a0 * x0 - a1 * y0
    b2 = centre - b0 * x0 - b1 * y0
    zeros = tf.zeros([count], tf.float32)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def apply_transforms(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Resample ``images`` [N, S, S, 3] with ``transforms`` [N, 8] (bilinear, zero fill)."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")


def grayscale(images: tf.Tensor) -> tf.Tensor:
    """Luma of RGB ``images`` [..., 3], float32 [..., 1]."""
    return tf.reduce_sum(images * tf.constant(LUMA, tf.float32), axis=-1, keepdims=True)


def color_jitter(images: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Brightness, contrast and saturation, each scaled by U(1 - strength, 1 + strength).

    Brightness multiplies the image; contrast blends with the image's mean luma;
    saturation blends with each pixel's luma. float32 [N, S, S, 3] in and out (not clipped).
    """
    count = tf.shape(images)[0]
    factors = tf.random.stateless_uniform([3, count], seed, 1.0 - strength, 1.0 + strength)
    brightness, contrast, saturation = (f[:, None, None, None] for f in tf.unstack(factors))
    images = images * brightness
    mean = tf.reduce_mean(grayscale(images), axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * contrast + mean
    luma = grayscale(images)
    return (images - luma) * saturation + luma


def random_grayscale(images: tf.Tensor, probability: float, seed: tf.Tensor) -> tf.Tensor:
    """Replace each image by its luma (3 equal channels) with ``probability``."""
    chosen = tf.random.stateless_uniform([tf.shape(images)[0]], seed) < probability
    gray = tf.broadcast_to(grayscale(images), tf.shape(images))
    return tf.where(chosen[:, None, None, None], gray, images)
