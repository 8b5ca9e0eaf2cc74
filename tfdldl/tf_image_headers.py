"""Image file headers read inside a TensorFlow graph, for :func:`tfdldl.tf_image_io.inspect`.

The graph twin of tfdldl.image_io's header parsing: per format (JPEG, PNG, GIF, BMP,
WebP) the declared height and width, the JPEG's EXIF orientation and the reason, in
image_io's words, why the header refuses the file; and :func:`webp_still`, an animated
WebP's first frame as a still file (as image_io.webp_first_frame). Beneath them, byte
readers on tf.string scalars that never fail past the end of the data (zeros, or "").
Nothing here decodes pixels.
"""

from __future__ import annotations

import tensorflow as tf

from tfdldl import image_io

_EXIF_ENTRIES = 64  # IFD0 entries searched for the Orientation tag
_ORIENTATION_TAG = 0x0112
_WEBP_CHUNKS = 1024  # chunks walked to find an animation's first frame
JPEG_SCAN, JPEG_END = b"\xff\xda", b"\xff\xd9"  # start-of-scan, end-of-image markers
ALL = 2 ** 31 - 1  # a substring length that reaches the end of any tf.string


# -- reading bytes -----------------------------------------------------------------------

def zero():
    """int64 scalar 0."""
    return tf.constant(0, tf.int64)


def substr(data, start, count: int):
    """data[start:start + count] (shorter, or "", past the end), for any start >= 0."""
    start = tf.minimum(tf.cast(start, tf.int64), tf.cast(tf.strings.length(data), tf.int64))
    return tf.strings.substr(data, start, tf.constant(count, tf.int64))


def read_bytes(data, start, count: int):
    """int64 [count]: the bytes of data[start:start + count], zeros past the end."""
    padded = tf.strings.substr(tf.strings.join([substr(data, start, count), b"\0" * count]),
                               0, count)
    return tf.reshape(tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int64), [count])


def uint(values, big_endian):
    """The unsigned integer of int64 byte values [..., n] (big- or little-endian)."""
    n = int(values.shape[-1])
    weights = tf.constant([256 ** (n - 1 - i) for i in range(n)], tf.int64)
    weights = tf.where(big_endian, weights, tf.reverse(weights, [0]))
    return tf.reduce_sum(values * weights, axis=-1)


def _contains(data, needle: bytes):
    return tf.size(tf.strings.split(data, sep=needle)) > 1


def _byte_string(values):
    """int64 [n] byte values -> the tf.string of those bytes."""
    table = tf.constant([bytes([i]) for i in range(256)])
    return tf.strings.reduce_join(tf.gather(table, values))


def _le_bytes(value, count: int):
    """int64 scalar -> its ``count`` little-endian bytes, int64 [count]."""
    return tf.math.floormod(tf.bitwise.right_shift(
        value, tf.constant([8 * i for i in range(count)], tf.int64)), 256)


# -- headers -----------------------------------------------------------------------------
# Each takes the tf.string scalar file (and its int64 length) and returns (height int64
# scalar, width int64 scalar, orientation int32 scalar, reason tf.string scalar: "" or
# image_io's wording of what is wrong with the header).

def jpeg_header(data, length):
    """A JPEG's size from its first frame header, its EXIF orientation (1 when absent or
    out of 1..8), and the header or truncation reason."""
    frames = tf.constant(image_io.JPEG_FRAME_MARKERS, tf.int64)
    standalone = tf.constant(tuple(range(0xD0, 0xD8)) + (0x01,), tf.int64)

    def walking(step, position, height, width, orientation, done):
        return tf.logical_and(step < image_io.MAX_JPEG_SEGMENTS, tf.logical_not(done))

    def step_once(step, position, height, width, orientation, done):
        head = read_bytes(data, position, 9)
        marker = head[1]
        valid = tf.logical_and(position + 4 <= length, tf.equal(head[0], 0xFF))
        fill = tf.logical_and(valid, tf.equal(marker, 0xFF))
        frame = tf.logical_and(tf.logical_and(valid, tf.logical_not(fill)),
                               tf.reduce_any(tf.equal(marker, frames)))
        end = tf.logical_or(tf.equal(marker, 0xDA), tf.equal(marker, 0xD9))
        found = tf.logical_and(tf.logical_and(valid, tf.equal(marker, 0xE1)),
                               tf.equal(orientation, 0))
        orientation = tf.where(found, _exif_orientation(data, position), orientation)
        skip = tf.where(tf.reduce_any(tf.equal(marker, standalone)), tf.constant(2, tf.int64),
                        2 + head[2] * 256 + head[3])
        return (step + 1, position + tf.where(fill, tf.constant(1, tf.int64), skip),
                tf.where(frame, head[5] * 256 + head[6], height),
                tf.where(frame, head[7] * 256 + head[8], width), orientation,
                tf.logical_or(tf.logical_not(valid), tf.logical_or(frame, tf.logical_and(
                    tf.logical_not(fill), end))))

    _, _, height, width, orientation, _ = tf.while_loop(
        walking, step_once, (tf.constant(0), tf.constant(2, tf.int64), tf.constant(-1, tf.int64),
                             tf.constant(-1, tf.int64), tf.constant(0, tf.int64),
                             tf.constant(False)))
    # Truncated: image data after the last end-of-image marker (as image_io's rfind test).
    after_end = tf.strings.split(data, sep=JPEG_END)[-1]
    reason = tf.where(height < 0, image_io.REASON_JPEG_HEADER,
                      tf.where(_contains(after_end, JPEG_SCAN),
                               image_io.REASON_TRUNCATED_JPEG, ""))
    orientation = tf.where(tf.logical_and(orientation >= 1, orientation <= 8), orientation, 1)
    return height, width, tf.cast(orientation, tf.int32), reason


def _exif_orientation(data, position):
    """The Orientation of the APP1 segment at ``position`` (0 when it is not Exif)."""
    exif = tf.equal(substr(data, position + 4, 6), b"Exif\0\0")
    tiff = position + 10
    header = read_bytes(data, tiff, 8)
    big = tf.equal(header[0], 0x4D)  # "MM"; "II" is little-endian
    directory = read_bytes(data, tiff + uint(header[4:8], big), 2 + 12 * _EXIF_ENTRIES)
    count = uint(directory[:2], big)
    entries = tf.reshape(directory[2:], [_EXIF_ENTRIES, 12])
    tags = uint(entries[:, 0:2], big)
    values = uint(entries[:, 8:10], big)
    wanted = tf.logical_and(tf.range(_EXIF_ENTRIES, dtype=tf.int64) < count,
                            tf.equal(tags, _ORIENTATION_TAG))
    first = tf.argmax(tf.cast(wanted, tf.int32))
    return tf.where(tf.logical_and(exif, tf.reduce_any(wanted)), values[first],
                    tf.constant(0, tf.int64))


def png_header(data, length):
    """A PNG's size from IHDR; refused without IHDR first or without IEND."""
    head = read_bytes(data, 16, 8)
    reason = tf.where(tf.not_equal(substr(data, 12, 4), b"IHDR"), image_io.REASON_PNG_HEADER,
                      tf.where(_contains(substr(data, 33, ALL), b"IEND"), "",
                               image_io.REASON_TRUNCATED_PNG))
    return uint(head[4:8], True), uint(head[0:4], True), tf.constant(1), reason


def gif_header(data):
    """A GIF's logical screen size; never refused here."""
    head = read_bytes(data, 6, 4)
    return uint(head[2:4], False), uint(head[0:2], False), tf.constant(1), tf.constant("")


def bmp_header(data, length):
    """A BMP's size (bottom-up or top-down); refused when not an image_io.BMP_SUPPORTED
    variant or shorter than its pixel rows."""
    head = read_bytes(data, 0, 54)
    bits, compression = uint(head[28:30], False), uint(head[30:34], False)
    supported = tf.reduce_any([tf.logical_and(tf.equal(bits, b), tf.equal(compression, c))
                               for b, c in image_io.BMP_SUPPORTED])
    supported = tf.logical_and(supported, uint(head[14:18], False) >= 40)
    width = uint(head[18:22], False)
    width = tf.where(width >= 2 ** 31, tf.constant(0, tf.int64), width)
    height = uint(head[22:26], False)
    height = tf.abs(tf.where(height >= 2 ** 31, height - 2 ** 32, height))
    row = (bits * width + 31) // 32 * 4
    short = length < uint(head[10:14], False) + row * height
    reason = tf.where(tf.logical_not(supported), image_io.REASON_BMP_KIND,
                      tf.where(short, image_io.REASON_TRUNCATED_BMP, ""))
    return height, width, tf.constant(1), reason


def webp_header(data, length):
    """A WebP's size from its VP8, VP8L or VP8X chunk; refused when shorter than its RIFF
    header declares, without such a chunk, or an animation without a frame."""
    head = read_bytes(data, 0, 30)
    chunk = substr(data, 12, 4)
    lossless = uint(head[21:25], False)
    height, width = tf.case([
        (tf.equal(chunk, b"VP8 "), lambda: (tf.bitwise.bitwise_and(uint(head[28:30], False),
                                                                    0x3FFF),
                                            tf.bitwise.bitwise_and(uint(head[26:28], False),
                                                                   0x3FFF))),
        (tf.equal(chunk, b"VP8L"), lambda: (tf.bitwise.bitwise_and(
            tf.bitwise.right_shift(lossless, 14), 0x3FFF) + 1,
            tf.bitwise.bitwise_and(lossless, 0x3FFF) + 1)),
        (tf.equal(chunk, b"VP8X"), lambda: (uint(head[27:30], False) + 1,
                                            uint(head[24:27], False) + 1))],
        default=lambda: (tf.constant(-1, tf.int64), tf.constant(-1, tf.int64)))
    found, _ = webp_still(data)
    reason = tf.where(length < 8 + uint(head[4:8], False), image_io.REASON_TRUNCATED_WEBP,
                      tf.where(tf.logical_or(height < 0, tf.logical_not(found)),
                               image_io.REASON_WEBP_KIND, ""))
    return height, width, tf.constant(1), reason


def webp_still(data):
    """(found bool, still WebP) as image_io.webp_first_frame: an animation's first frame on
    its own, a still WebP as it is; found is False for an animation without a frame."""
    animated = tf.logical_and(tf.equal(substr(data, 12, 4), b"VP8X"), tf.not_equal(
        tf.bitwise.bitwise_and(read_bytes(data, 20, 1)[0], 0x02), 0))

    def first_frame():
        length = tf.cast(tf.strings.length(data), tf.int64)

        def walking(step, position, found):
            return tf.logical_and(tf.logical_and(step < _WEBP_CHUNKS, position + 8 <= length),
                                  tf.logical_not(found))

        def step_once(step, position, found):
            found = tf.equal(substr(data, position, 4), b"ANMF")
            size = uint(read_bytes(data, position + 4, 4), False)
            return step + 1, tf.where(found, position, position + 8 + size + size % 2), found

        _, position, found = tf.while_loop(
            walking, step_once, (tf.constant(0), tf.constant(30, tf.int64), tf.constant(False)))
        size = uint(read_bytes(data, position + 4, 4), False)
        frame = tf.strings.substr(data, tf.minimum(position + 24, length),
                                  tf.maximum(size - 16, 0))
        sizes = read_bytes(data, position + 14, 6)
        width, height = uint(sizes[0:3], False) + 1, uint(sizes[3:6], False) + 1
        alpha_header = _byte_string(tf.concat([
            tf.constant(list(b"VP8X\x0a\0\0\0\x10\0\0\0"), tf.int64),
            _le_bytes(width - 1, 3), _le_bytes(height - 1, 3)], 0))
        frame = tf.where(tf.equal(tf.strings.substr(frame, 0, 4), b"ALPH"),
                         tf.strings.join([alpha_header, frame]), frame)
        riff = _byte_string(_le_bytes(4 + tf.cast(tf.strings.length(frame), tf.int64), 4))
        return found, tf.strings.join([b"RIFF", riff, b"WEBP", frame])

    return tf.cond(animated, first_frame, lambda: (tf.constant(True), data))
