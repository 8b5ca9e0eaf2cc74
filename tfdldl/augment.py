"""Training augmentation on batches of images, with plain TensorFlow ops (no tensorflow-addons).

All randomness is stateless: a batch's augmentation is a pure function of its images and
a seed tensor int32/int64 [2], so a run is reproducible and a resumed run sees the same
augmentation as an uninterrupted one.

The paper's set (DLDL-v2, after fb.resnet.torch): horizontal flip, random rescale + random
crop, rotation ±15°, colour jitter 0.4 (brightness, contrast, saturation), grayscale with
p = 0.5. The geometric parts (flip, rescale, crop offset, rotation, framing jitter) are
composed into ONE projective transform per image and applied with a single bilinear
resampling (``ImageProjectiveTransformV3``), so a batch is resampled once however many are
enabled. Where the window leaves the face, the face is mirrored (``fill_mode: reflect``),
as data_prep fills crops that leave the photo.

Real-photo degradations (:class:`tfdldl.experiment.AugmentConfig`, off by default):
down-and-up scaling, Gaussian blur, JPEG re-encoding, colour casts and pixel noise, each
applied to a random share of the images.

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
    seed = tf.cast(seed, tf.int64)
    geometry_seed, gray_seed, jitter_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3))
    down_seed, blur_seed, jpeg_seed, cast_seed, noise_seed = tf.unstack(
        tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(seed, 1), num=5))
    if config.flip or config.rescale or config.rotation_degrees > 0 or config.translate > 0:
        scale_range = (config.rescale_min, config.rescale_max) if config.rescale else (1.0, 1.0)
        transforms = random_transforms(tf.shape(images)[0], tf.shape(images)[1], geometry_seed,
                                       config.flip, scale_range, config.rotation_degrees,
                                       config.translate)
        images = apply_transforms(images, transforms, config.fill_mode)
    if config.downscale_probability > 0:
        images = random_downscale(images, config.downscale_probability, config.downscale_min,
                                  down_seed)
    if config.blur_probability > 0:
        images = random_blur(images, config.blur_probability, blur_seed)
    if config.jpeg_probability > 0:
        images = random_jpeg(images, config.jpeg_probability,
                             (config.jpeg_quality_min, config.jpeg_quality_max), jpeg_seed)
    if config.color_jitter > 0:
        images = color_jitter(images, config.color_jitter, jitter_seed)
    if config.color_cast > 0:
        images = color_cast(images, config.color_cast, cast_seed)
    if config.grayscale_probability > 0:
        images = random_grayscale(images, config.grayscale_probability, gray_seed)
    if config.noise_std > 0:
        images = random_noise(images, config.noise_std, noise_seed)
    return tf.clip_by_value(images, 0.0, 255.0)


def random_transforms(count: tf.Tensor, size: tf.Tensor, seed: tf.Tensor, flip: bool,
                      scale_range: tuple[float, float], rotation_degrees: float,
                      translate: float = 0.0) -> tf.Tensor:
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
      translate: further shift of up to this fraction of S in x and y (framing jitter).
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
    slack = tf.abs(1.0 - scale) * side / 2.0 + translate * side
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


def apply_transforms(images: tf.Tensor, transforms: tf.Tensor,
                     fill_mode: str = "constant") -> tf.Tensor:
    """Resample ``images`` [N, S, S, 3] with ``transforms`` [N, 8] (bilinear); outside the
    image is mirrored (``fill_mode`` "reflect") or black ("constant")."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode=fill_mode.upper())


def _chosen(count: tf.Tensor, probability: float, seed: tf.Tensor) -> tf.Tensor:
    """bool [N]: which images of a batch a random operation applies to."""
    return tf.random.stateless_uniform([count], seed) < probability


def random_downscale(images: tf.Tensor, probability: float, minimum: float,
                     seed: tf.Tensor) -> tf.Tensor:
    """Shrink a ``probability`` share of the images to U(minimum, 1) x S (area averaging,
    one factor per batch) and scale them back up (bilinear): the look of small faces."""
    choice_seed, factor_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    side = tf.shape(images)[1]
    factor = tf.random.stateless_uniform([], factor_seed, minimum, 1.0)
    small_side = tf.maximum(8, tf.cast(tf.round(factor * tf.cast(side, tf.float32)), tf.int32))
    small = tf.image.resize(images, [small_side, small_side], method="area")
    restored = tf.image.resize(small, [side, side], method="bilinear")
    chosen = _chosen(tf.shape(images)[0], probability, choice_seed)
    return tf.where(chosen[:, None, None, None], restored, images)


def random_blur(images: tf.Tensor, probability: float, seed: tf.Tensor,
                sigma: float = 1.2) -> tf.Tensor:
    """Blend a ``probability`` share of the images with a Gaussian-blurred copy (σ px,
    5x5 kernel, mirrored edges), blend weight U(0, 1) per image."""
    choice_seed, weight_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    taps = tf.exp(-tf.square(tf.range(-2.0, 3.0)) / (2.0 * sigma * sigma))
    taps = taps / tf.reduce_sum(taps)
    kernel = tf.tile((taps[:, None] * taps[None, :])[:, :, None, None], [1, 1, 3, 1])
    padded = tf.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
    blurred = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
    count = tf.shape(images)[0]
    weight = tf.random.stateless_uniform([count], weight_seed)[:, None, None, None]
    mixed = images + weight * (blurred - images)
    return tf.where(_chosen(count, probability, choice_seed)[:, None, None, None], mixed,
                    images)


def random_jpeg(images: tf.Tensor, probability: float, quality_range: tuple[int, int],
                seed: tf.Tensor) -> tf.Tensor:
    """Re-encode a ``probability`` share of the images as JPEG with quality
    U(quality_range) (inclusive), one quality per image; the others are left as they are."""
    choice_seed, quality_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    count = tf.shape(images)[0]
    chosen = _chosen(count, probability, choice_seed)
    quality = tf.random.stateless_uniform([count], quality_seed, quality_range[0],
                                          quality_range[1] + 1, dtype=tf.int32)

    def one(args):
        image, quality_i, chosen_i = args
        return tf.cond(chosen_i, lambda: _jpeg_round_trip(image, quality_i), lambda: image)

    return tf.map_fn(one, (images, quality, chosen),
                     fn_output_signature=tf.TensorSpec(images.shape[1:], tf.float32))


def _jpeg_round_trip(image: tf.Tensor, quality: tf.Tensor) -> tf.Tensor:
    pixels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
    return tf.cast(tf.image.adjust_jpeg_quality(pixels, quality), tf.float32)


def color_cast(images: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Multiply each channel of each image by U(1 - strength, 1 + strength): tints."""
    gains = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 3], seed,
                                        1.0 - strength, 1.0 + strength)
    return images * gains


def random_noise(images: tf.Tensor, max_std: float, seed: tf.Tensor) -> tf.Tensor:
    """Add Gaussian noise with a per-image std U(0, max_std), 0..255 units."""
    std_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    std = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], std_seed, 0.0, max_std)
    return images + std * tf.random.stateless_normal(tf.shape(images), noise_seed)


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
    chosen = _chosen(tf.shape(images)[0], probability, seed)
    gray = tf.broadcast_to(grayscale(images), tf.shape(images))
    return tf.where(chosen[:, None, None, None], gray, images)
