"""The TensorFlow twin of :mod:`tfdldl.image_io`: encoded bytes -> uint8 RGB inside a graph.

The serving signatures, the tf.data training pipeline and evaluation decode with
:func:`decode_rgb` here; everything else uses :func:`tfdldl.image_io.decode_rgb`. Both
follow the rules written in :mod:`tfdldl.image_io`'s docstring (formats, the
:data:`~tfdldl.image_io.MAX_PIXELS` limit read from the header before decoding, the
accurate IDCT, EXIF orientation, alpha on black, first frames), and
``tests/test_decoder_parity.py`` pins the two to each other pixel for pixel.

A graph cannot raise for one image of a batch without failing the others, so
:func:`decode_rgb` returns a reason instead of raising, for three kinds of bad file:

- Headers: :func:`inspect` checks every header first (format, declared size, truncation;
  the per-format parsers are in :mod:`tfdldl.tf_image_headers`) and nothing is decoded
  when it refuses.
- Data damaged behind intact headers (garbled JPEG entropy data, a PNG with a broken
  IDAT stream): TensorFlow's decoder raises. Each image is decoded in a one-element
  tf.data pipeline with ``ignore_errors()``, so a decoder error drops that element and a
  fallback element carries :func:`tfdldl.image_io.reason_corrupt_data` instead.
- JPEG data libjpeg only warns about: when a scan's entropy-coded data ends before its
  last block, libjpeg warns "premature end of data segment" and decodes the rest as if
  the missing bits were zeros, leaving every later block uniform grey 128, and TensorFlow
  never shows the warning. When the last pixel is exactly (128, 128, 128), the JPEG is
  decoded a second time with a copy of its last scan's entropy-coded data inserted before
  the end-of-image marker: a complete scan never reads past its end, so both decodes are
  equal; a scan that ends early reads the inserted bytes instead of zeros, and the pixels
  differ. (Not seen: data missing only inside the last block row's last MCU, inside an
  earlier restart interval or an earlier progressive scan, and surplus data, which
  libjpeg reports as "extraneous bytes"; OpenCV's path refuses those.)

The reasons are image_io's, word for word.
"""

from __future__ import annotations

import tensorflow as tf

from tfdldl import image_io
from tfdldl.tf_image_headers import (ALL, JPEG_END, JPEG_SCAN, bmp_header, gif_header,
                                     jpeg_header, png_header, read_bytes, substr, uint,
                                     webp_header, webp_still, zero)

# Format codes of inspect().
UNKNOWN, JPEG, PNG, BMP, GIF, WEBP, TIFF, EMPTY = range(8)
_SIGNATURES = ((JPEG, b"\xff\xd8\xff"), (PNG, b"\x89PNG\r\n\x1a\n"), (BMP, b"BM"),
               (TIFF, b"II*\x00"), (TIFF, b"MM\x00*"), (GIF, b"GIF87a"), (GIF, b"GIF89a"))
REASON_NOT_AN_IMAGE = "not an image (not JPEG, PNG, BMP, GIF or WebP data)"
# libjpeg's accurate integer IDCT: OpenCV's, so both decoders give the same pixels.
JPEG_DCT_METHOD = "INTEGER_ACCURATE"
_DECODED = (JPEG, PNG, BMP, GIF, WEBP)  # the kinds decode_rgb decodes, in code order


def inspect(data):
    """What a file's header says, without decoding it.

    Args:
      data: tf.string scalar, the encoded file.
    Returns:
      (kind int32 scalar: one of UNKNOWN, JPEG, ...; reason tf.string scalar: "" when the
      file may be decoded, else why not (image_io's wording); orientation int32 scalar:
      the JPEG's EXIF Orientation, 1..8, 1 when absent).
    """
    data = tf.convert_to_tensor(data, tf.string)
    length = tf.cast(tf.strings.length(data), tf.int64)
    kind = tf.constant(UNKNOWN)
    for code, signature in reversed(_SIGNATURES):
        kind = tf.where(tf.equal(tf.strings.substr(data, 0, len(signature)), signature),
                        code, kind)
    webp = tf.logical_and(tf.equal(tf.strings.substr(data, 0, 4), b"RIFF"),
                          tf.equal(substr(data, 8, 4), b"WEBP"))
    kind = tf.where(webp, WEBP, kind)
    kind = tf.where(tf.equal(length, 0), EMPTY, kind)

    def refuse(reason):
        return lambda: (zero(), zero(), tf.constant(1), tf.constant(reason))

    branches = {UNKNOWN: refuse(REASON_NOT_AN_IMAGE), EMPTY: refuse(image_io.REASON_EMPTY),
                TIFF: refuse(image_io.REASON_TIFF),
                JPEG: lambda: jpeg_header(data, length),
                PNG: lambda: png_header(data, length),
                BMP: lambda: bmp_header(data, length),
                GIF: lambda: gif_header(data),
                WEBP: lambda: webp_header(data, length)}
    height, width, orientation, reason = tf.switch_case(
        kind, [branches[code] for code in range(len(branches))])
    template = image_io.reason_too_large("{}", "{}")
    reason = tf.where(
        tf.not_equal(reason, ""), reason,
        tf.where(tf.logical_or(height <= 0, width <= 0), image_io.REASON_NO_SIZE,
                 tf.where(_too_large(height, width),
                          tf.strings.format(template, (width, height)), "")))
    return kind, reason, orientation


def _too_large(height, width):
    limit = image_io.MAX_PIXELS  # each side checked first: the product could overflow int64
    return tf.logical_or(tf.logical_or(height > limit, width > limit), height * width > limit)


def decode_rgb(data):
    """Decode one encoded image as RGB, or say why not (never raises for bad data).

    Args:
      data: tf.string scalar, the encoded file (JPEG, PNG, BMP, GIF, WebP).
    Returns:
      (image uint8 [H, W, 3] RGB (a 1 x 1 black image when refused), reason tf.string
      scalar: "" when decoded, else why it was not).
    """
    data = tf.convert_to_tensor(data, tf.string)
    kind, reason, orientation = inspect(data)
    return tf.cond(tf.equal(reason, ""), lambda: _decode_checked(data, kind, orientation),
                   lambda: (_refused(), reason))


def _refused():
    return tf.zeros([1, 1, 3], tf.uint8)


def _decode_checked(data, kind, orientation):
    """(uint8 [H, W, 3] RGB, reason) of a file whose header passed :func:`inspect`."""
    def by(name, decode, finish, fallback_dtype=tf.uint8, rank=3):
        return lambda: _decoded_by(name, decode, finish, data, fallback_dtype, rank)

    branches = {JPEG: lambda: _jpeg_pixels(data, orientation),
                PNG: by("PNG", lambda raw: tf.io.decode_png(raw, dtype=tf.uint16),
                        lambda image: _composite(_eight_bit(image)), tf.uint16),
                BMP: by("BMP", lambda raw: tf.io.decode_bmp(raw, channels=0),
                        lambda image: _bmp_pixels(data, image)),
                GIF: by("GIF", tf.io.decode_gif, lambda frames: frames[0], rank=4),
                WEBP: by("WEBP", lambda raw: tf.io.decode_webp(webp_still(raw)[1]),
                         lambda frames: _composite(frames[0]), rank=4)}
    image, reason = tf.switch_case(kind - JPEG, [branches[code] for code in _DECODED])
    return tf.ensure_shape(image, [None, None, 3]), reason


def _decoded_by(name, decode, finish, data, fallback_dtype, rank):
    """(finish(decode(data)), "") or, when the decoder raises, (1 x 1 black, the reason)."""
    decoded, ok = _guarded(decode, data, tf.zeros([1] * rank, fallback_dtype))
    return (tf.cond(ok, lambda: finish(decoded), _refused),
            tf.where(ok, "", image_io.reason_corrupt_data(name)))


def _guarded(decode, data, fallback):
    """(decode(data), True), or (fallback, False) when ``decode`` raises (corrupt data):
    a one-element tf.data pipeline whose ``ignore_errors()`` drops a failed element."""
    decoded = tf.data.Dataset.from_tensors(data).map(
        lambda raw: (decode(raw), tf.constant(True))).ignore_errors()
    fallback = tf.data.Dataset.from_tensors((fallback, tf.constant(False)))
    return decoded.concatenate(fallback).take(1).get_single_element()


def _jpeg_pixels(data, orientation):
    """A JPEG's pixels, oriented, and its reason: corrupt data when the decoder raises,
    the premature-end reason when its last scan's data ends early (module docstring)."""
    def twice(raw):
        image = _decode_jpeg(raw)
        # Blocks past a premature end are left at 0: uniform grey 128, the last one included.
        grey_end = tf.reduce_all(tf.equal(image[-1, -1], 128))
        return image, tf.cond(grey_end, lambda: tf.reduce_any(tf.not_equal(
            image, _decode_jpeg(_with_scan_copy(raw)))), lambda: tf.constant(False))

    (image, premature), ok = _guarded(twice, data, (_refused(), tf.constant(False)))
    reason = tf.where(ok, tf.where(premature, image_io.REASON_CORRUPT_JPEG_DATA.format(
        warning=image_io.JPEG_WARNING_PREMATURE_END), ""), image_io.reason_corrupt_data("JPEG"))
    return tf.cond(ok, lambda: _orient(image, orientation), _refused), reason


def _decode_jpeg(data):
    return tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT_METHOD)


def _with_scan_copy(data):
    """The JPEG with its last scan's entropy-coded data copied in before its last
    end-of-image marker (entropy-coded data holds no 0xFFD9 or 0xFFDA)."""
    length = tf.cast(tf.strings.length(data), tf.int64)
    end = length - tf.cast(tf.strings.length(
        tf.strings.split(data, sep=JPEG_END)[-1]), tf.int64) - len(JPEG_END)
    head = tf.strings.substr(data, tf.constant(0, tf.int64), end)
    scan = tf.strings.split(head, sep=JPEG_SCAN)[-1]  # the scan header, then its data
    entropy = substr(scan, uint(read_bytes(scan, 0, 2), True), ALL)
    return tf.strings.join([head, entropy, substr(data, end, ALL)])


def decode_resized(data, size: int):
    """:func:`decode_rgb`, then resized to ``size`` x ``size`` (bilinear, no antialiasing,
    half-pixel centres; untouched when already that size).

    The uint8 image is resized as it is (never cast whole to float32 first).

    Returns:
      (float32 [size, size, 3] RGB 0..255 (zeros when refused), reason tf.string scalar).
    """
    image, reason = decode_rgb(data)
    return resize(image, size), reason


def resize(image, size: int):
    """uint8 or float [H, W, 3] -> float32 [size, size, 3], as :func:`decode_resized`."""
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    resized = tf.cond(same, lambda: tf.cast(image, tf.float32),
                      lambda: tf.image.resize(image, [size, size], method="bilinear"))
    return tf.ensure_shape(resized, [size, size, 3])


# -- pixels ------------------------------------------------------------------------------

def _eight_bit(image):
    """uint16 -> uint8 as image_io: v * 255 // 65535."""
    return tf.cast(tf.cast(image, tf.int32) * 255 // 65535, tf.uint8)


def _composite(image):
    """uint8 [H, W, C], C = 1 (gray), 2 (gray, alpha), 3 (RGB), 4 (RGBA) -> uint8 RGB on black."""
    def on_black(rgb, alpha):
        weight = tf.cast(alpha, tf.float32) / 255.0
        return tf.cast(tf.round(tf.cast(rgb, tf.float32) * weight), tf.uint8)

    channels = tf.shape(image)[-1]
    return tf.switch_case(channels - 1, [
        lambda: tf.tile(image[:, :, :1], [1, 1, 3]),
        lambda: on_black(tf.tile(image[:, :, :1], [1, 1, 3]), image[:, :, 1:2]),
        lambda: image[:, :, :3],
        lambda: on_black(image[:, :, :3], image[:, :, 3:4])])


def _bmp_pixels(data, image):
    """A BMP as RGB from its file and ``decode_bmp(data, channels=0)``: an 8-bit one
    through its colour table, 32-bit with the 4th byte dropped."""

    def through_palette():
        head = read_bytes(data, 0, 54)
        used = uint(head[46:50], False)
        colours = tf.where(tf.logical_or(used == 0, used > 256), tf.constant(256, tf.int64),
                           used)
        table = tf.reshape(read_bytes(data, 14 + uint(head[14:18], False), 4 * 256), [256, 4])
        rgb = tf.cast(tf.reverse(table[:, :3], [1]), tf.uint8)  # stored B, G, R, 0
        index = tf.minimum(tf.cast(image[:, :, 0], tf.int64), colours - 1)
        return tf.gather(rgb, index)

    return tf.cond(tf.equal(tf.shape(image)[-1], 1), through_palette,
                   lambda: image[:, :, :3])


def _orient(image, orientation):
    """Apply EXIF orientation 1..8 (the transform that displays the stored pixels upright)."""
    transposed = lambda: tf.transpose(image, [1, 0, 2])  # noqa: E731
    return tf.switch_case(orientation - 1, [
        lambda: image,
        lambda: tf.reverse(image, [1]),                     # 2: mirrored left-right
        lambda: tf.reverse(image, [0, 1]),                  # 3: rotated 180
        lambda: tf.reverse(image, [0]),                     # 4: mirrored top-bottom
        transposed,                                          # 5: transposed
        lambda: tf.reverse(transposed(), [1]),              # 6: rotate 90 clockwise
        lambda: tf.reverse(transposed(), [0, 1]),           # 7: transverse
        lambda: tf.reverse(transposed(), [0])])             # 8: rotate 90 anticlockwise
