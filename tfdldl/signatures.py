"""The SavedModel's signatures: tf.functions from images to a head's serving outputs.

Signatures (N = batch size, at most :data:`MAX_BATCH`; K = label grid size):

- ``serving_default``: ``images`` tf.string [N], encoded JPEG/PNG/BMP/GIF/WebP bytes of
  aligned faces (TF Serving's REST ``{"b64": ...}``). Each image is decoded in the graph by
  :func:`tfdldl.tf_image_io.decode_rgb`, with the same rules as every other path
  (:mod:`tfdldl.image_io`: EXIF orientation, accurate IDCT, alpha on black, first frame,
  TIFF refused, at most :data:`tfdldl.image_io.MAX_PIXELS` pixels read from the header
  before decoding), resized to the model's input size (bilinear, no antialiasing; skipped
  when the size already matches) as float32 0..255; the model normalises itself.
- ``predict_images``: ``images`` float32 [N, H, W, 3] RGB 0..255 (H x W at most
  MAX_PIXELS), resized the same way.
- ``serving_flip_averaged``: like ``serving_default``, but averages each face with its
  mirror image (the paper's test protocol; one forward pass over 2N images). It is a
  separate signature so that ``serving_default`` stays a single plain pass.

Outputs (float32): ``value`` [N] (the model's "value" output: the expected label, label
units), ``stddev`` [N] (the standard deviation of the predicted distribution, sqrt(Σ_k p_k
(l_k - ŷ)²) with ŷ = Σ_k p_k l_k, label units; ``tfdldl.layers.distribution_stddev``) and
``distribution`` [N, K]. A ranking-head model reports the distribution its K-1 binary
outputs imply (differences of the ranking CDF, negatives clipped, renormalised); a
regression-head model has no distribution, so it exports only ``value`` and a NaN ``stddev``.
A model with categorical heads (tfdldl.heads.CategoricalHead) also outputs each one's
``<name>_probability`` [N, C] (e.g. ``gender_probability``; columns in the order of
export_info.json's ``class_names``; averaged over the face and its mirror in
``serving_flip_averaged``).
The two signatures of encoded images also output ``error`` tf.string [N]: "" for an image
that was decoded, else why it was not (not an image, TIFF, too many pixels, truncated...);
such an image's ``value``, ``stddev``, ``distribution`` (and ``<name>_probability``) are NaN and the others of the
batch are answered. A batch of more than MAX_BATCH images, or ``predict_images`` pixels
above MAX_PIXELS, fails the call with a message that says so. Data damaged inside a file
whose headers are intact (garbled or cut entropy data, a bad PNG chunk) gets its own
``error`` too (tfdldl.tf_image_io.decode_rgb); the rest of the batch is answered.
"""

from __future__ import annotations

from tfdldl.label_space import LabelSpace

SERVING_DEFAULT = "serving_default"
PREDICT_IMAGES = "predict_images"
SERVING_FLIP_AVERAGED = "serving_flip_averaged"
SIGNATURES = (SERVING_DEFAULT, PREDICT_IMAGES, SERVING_FLIP_AVERAGED)
REQUIRED_SIGNATURES = (SERVING_DEFAULT, PREDICT_IMAGES)
INPUT_NAME = "images"
ERROR_OUTPUT = "error"
# Images per call of any signature: 10,000 faces in one request would need tens of GB of
# activations and abort TF Serving (std::bad_alloc); split larger batches.
MAX_BATCH = 256


def endpoints(model, head, label_space: LabelSpace, size: int) -> dict:
    """{signature name: (python function of ``images``, its tf.TensorSpec)}; the outputs are
    ``head.summarise`` of the model's (tfdldl.heads)."""
    import tensorflow as tf

    from tfdldl.heads import flip_average

    grid = tf.constant(label_space.grid, tf.float32)

    def summarise(images):
        return head.summarise(model(images, training=False), grid)

    def serving_default(images):
        faces, errors = _decode_batch(images, size)
        return _refused_as_nan(summarise(faces), errors)

    def predict_images(images):
        return summarise(_resize_batch(images, size))

    def serving_flip_averaged(images):
        faces, errors = _decode_batch(images, size)
        both = summarise(tf.concat([faces, tf.reverse(faces, axis=[2])], axis=0))
        halves = [{key: value for key, value in zip(both, parts)}
                  for parts in zip(*(tf.split(value, 2, axis=0) for value in both.values()))]
        return _refused_as_nan(flip_average(*halves, grid), errors)

    encoded = tf.TensorSpec([None], tf.string, name=INPUT_NAME)
    pixels = tf.TensorSpec([None, None, None, 3], tf.float32, name=INPUT_NAME)
    return {SERVING_DEFAULT: (serving_default, encoded),
            PREDICT_IMAGES: (predict_images, pixels),
            SERVING_FLIP_AVERAGED: (serving_flip_averaged, encoded)}


def _check_batch(images):
    """Fail the call, saying why, when ``images`` holds more than MAX_BATCH images."""
    import tensorflow as tf

    return tf.debugging.assert_less_equal(
        tf.shape(images)[0], MAX_BATCH,
        message=f"too many images in one request: at most {MAX_BATCH} per call "
                "(tfdldl.export.MAX_BATCH); split the batch")


def _decode_batch(encoded, size: int):
    """tf.string [N] encoded images -> (float32 [N, size, size, 3] RGB 0..255 (zeros where
    refused), tf.string [N] errors ("" where decoded)), by tfdldl.tf_image_io."""
    import tensorflow as tf

    from tfdldl import tf_image_io

    with tf.control_dependencies([_check_batch(encoded)]):
        encoded = tf.identity(encoded)
    return tf.map_fn(lambda data: tf_image_io.decode_resized(data, size), encoded,
                     fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32),
                                          tf.TensorSpec([], tf.string)))


def _refused_as_nan(summary: dict, errors) -> dict:
    """``summary`` with NaN rows where ``errors`` is not "", and the ``error`` output."""
    import tensorflow as tf

    refused = tf.not_equal(errors, "")
    nan = float("nan")
    answered = {key: tf.where(tf.reshape(refused, [-1] + [1] * (len(value.shape) - 1)),
                              nan, value) for key, value in summary.items()}
    answered[ERROR_OUTPUT] = errors
    return answered


def _resize_batch(images, size: int):
    """float32 [N, H, W, 3] -> [N, size, size, 3]: bilinear, untouched when already that size.

    Fails the call when N > MAX_BATCH or H x W > tfdldl.image_io.MAX_PIXELS.
    """
    import tensorflow as tf

    from tfdldl.image_io import MAX_PIXELS

    shape = tf.shape(images)
    area = tf.cast(shape[1], tf.int64) * tf.cast(shape[2], tf.int64)
    checks = [_check_batch(images), tf.debugging.assert_less_equal(
        area, tf.constant(MAX_PIXELS, tf.int64),
        message=f"images larger than {MAX_PIXELS} pixels (tfdldl.image_io.MAX_PIXELS); "
                "downscale them")]
    with tf.control_dependencies(checks):
        same = tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size))
        resized = tf.cond(same, lambda: tf.identity(images),
                          lambda: tf.image.resize(images, [size, size], method="bilinear"))
    return tf.ensure_shape(resized, [None, size, size, 3])
