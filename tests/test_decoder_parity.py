"""tfdldl.image_io (OpenCV) and tfdldl.tf_image_io (the serving graph's decoder) agree.

Every variant below is decoded by both; the pixels must be equal (CMYK JPEG: within the
1 grey level of TensorFlow's own CMYK conversion), and a file one refuses the other
refuses with the same reason, damaged data behind intact headers included.
"""

import io
import zlib

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfdldl import image_io, tf_image_io
from tfdldl.image_io import ImageReadError


def picture(height=40, width=56):
    """uint8 RGB [H, W, 3] with distinct channels and texture (BGR/RGB swaps and flips show)."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (height, width), dtype=np.uint8), (3, 3), 0)
    return np.stack([x * 255 // width, y * 255 // height, noise], -1).astype(np.uint8)


RGB = picture()
RGBA = np.dstack([RGB, np.tile(np.linspace(0, 255, RGB.shape[1]).astype(np.uint8),
                               (RGB.shape[0], 1))])


def pil(image, fmt, **options):
    stream = io.BytesIO()
    image.save(stream, fmt, **options)
    return stream.getvalue()


def ocv(ext, array, *params):
    return cv2.imencode(ext, array, list(params))[1].tobytes()


def bgr(rgb):
    return np.ascontiguousarray(rgb[..., ::-1])


def oriented(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pil(Image.fromarray(RGB), "JPEG", quality=95, exif=exif)


def palette(transparent=False):
    image = Image.fromarray(RGB).convert("P", palette=Image.ADAPTIVE, colors=64)
    return image, ({"transparency": 0} if transparent else {})


def animated(fmt, **options):
    frames = [Image.fromarray(RGB), Image.fromarray(np.ascontiguousarray(RGB[::-1]))]
    return pil(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100,
               loop=0, **options)


def with_png_size(data, width, height):
    """A PNG whose IHDR declares another size (CRC recomputed): a decompression bomb."""
    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + data[24:29]
    return data[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + data[33:]


def with_jpeg_size(data, width, height):
    """A JPEG whose frame header declares another size."""
    sof = data.index(b"\xff\xc0")
    return (data[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + data[sof + 9:])


ACCEPTED = {
    "jpeg": lambda: ocv(".jpg", bgr(RGB), cv2.IMWRITE_JPEG_QUALITY, 90),
    "jpeg gray": lambda: ocv(".jpg", RGB[..., 0]),
    "jpeg progressive": lambda: pil(Image.fromarray(RGB), "JPEG", progressive=True),
    "jpeg 4:2:0": lambda: pil(Image.fromarray(RGB), "JPEG", subsampling=2),
    **{f"jpeg exif {k}": (lambda k=k: oriented(k)) for k in range(1, 9)},
    "png": lambda: ocv(".png", bgr(RGB)),
    "png rgba": lambda: pil(Image.fromarray(RGBA), "PNG"),
    "png gray": lambda: ocv(".png", RGB[..., 1]),
    "png gray alpha": lambda: pil(Image.fromarray(RGBA[..., [0, 3]], "LA"), "PNG"),
    "png palette": lambda: pil(palette()[0], "PNG"),
    "png palette trns": lambda: pil(palette(True)[0], "PNG", **palette(True)[1]),
    "png 16-bit": lambda: ocv(".png", bgr(RGB).astype(np.uint16) * 257 + 3),
    "png 16-bit rgba": lambda: ocv(".png", np.dstack([bgr(RGB), RGBA[..., 3:]]).astype(
        np.uint16) * 257),
    "png 1-bit": lambda: pil(Image.fromarray(RGB).convert("1"), "PNG"),
    "bmp 24": lambda: ocv(".bmp", bgr(RGB)),
    "bmp 32": lambda: ocv(".bmp", np.dstack([bgr(RGB), RGBA[..., 3:]])),
    "bmp 32 bitfields": lambda: pil(Image.fromarray(RGBA), "BMP"),
    "bmp 8 palette": lambda: pil(palette()[0], "BMP"),
    "bmp 8 gray": lambda: pil(Image.fromarray(RGB[..., 0]), "BMP"),
    "gif": lambda: pil(palette()[0], "GIF"),
    "gif transparent": lambda: pil(palette(True)[0], "GIF", **palette(True)[1]),
    "gif animated": lambda: animated("GIF"),
    "webp": lambda: pil(Image.fromarray(RGB), "WEBP", quality=90),
    "webp lossless alpha": lambda: pil(Image.fromarray(RGBA), "WEBP", lossless=True),
    "webp lossy alpha": lambda: pil(Image.fromarray(RGBA), "WEBP", quality=80),
    "webp animated": lambda: animated("WEBP"),
    "webp animated alpha": lambda: pil(Image.fromarray(RGBA), "WEBP", save_all=True,
                                       append_images=[Image.fromarray(RGBA[::-1].copy())]),
}
ACCEPTED.update({
    "jpeg restart markers": lambda: ocv(".jpg", bgr(RGB), cv2.IMWRITE_JPEG_RST_INTERVAL, 2),
    "jpeg optimized": lambda: ocv(".jpg", bgr(RGB), cv2.IMWRITE_JPEG_OPTIMIZE, 1),
})
CMYK = lambda: pil(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=95)  # noqa: E731


# Damage behind intact headers (also used by test_bad_input's serving test).
def _entropy_span(data):
    """(start, end) of a JPEG's image data: its first scan marker to its last end marker."""
    return data.find(b"\xff\xda"), data.rfind(b"\xff\xd9")


def jpeg_zeroed(data):
    """The middle third of the image data zeroed, the end marker intact."""
    start, end = _entropy_span(data)
    third = (end - start) // 3
    return data[:start + third] + bytes(third) + data[start + 2 * third:]


def jpeg_cut_with_end(data):
    """The image data cut in half and an end-of-image marker appended: a cut file that
    the header check (an end marker after the data) cannot tell from a whole one."""
    start, end = _entropy_span(data)
    return data[:(start + end) // 2] + b"\xff\xd9"


def jpeg_garbled(data):
    """The middle third of the image data replaced by random bytes."""
    start, end = _entropy_span(data)
    third = (end - start) // 3
    noise = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    return data[:start + third] + noise + data[start + 2 * third:]


def png_broken_stream(data):
    """20 bytes of the IDAT chunk's compressed stream overwritten (CRC left as it was)."""
    start = data.index(b"IDAT") + 8
    return data[:start] + bytes(range(20)) + data[start + 20:]


def png_bad_crc(data):
    """The IDAT chunk's data intact, its CRC wrong."""
    start = data.index(b"IDAT")
    crc = start + 4 + int.from_bytes(data[start - 4:start], "big")
    return data[:crc] + bytes(b ^ 0xFF for b in data[crc:crc + 4]) + data[crc + 4:]


PREMATURE_END = image_io.REASON_CORRUPT_JPEG_DATA.format(
    warning=image_io.JPEG_WARNING_PREMATURE_END)


def _full_jpeg():
    return ocv(".jpg", bgr(RGB))


REFUSED = {
    "empty": (lambda: b"", image_io.REASON_EMPTY),
    "tiff": (lambda: pil(Image.fromarray(RGB), "TIFF"), image_io.REASON_TIFF),
    "truncated jpeg": (lambda: _full_jpeg()[: len(_full_jpeg()) // 2],
                       image_io.REASON_TRUNCATED_JPEG),
    "jpeg without frame": (lambda: b"\xff\xd8\xff\xe0\x00\x04ab\xff\xda\x00\x02\xff\xd9",
                           image_io.REASON_JPEG_HEADER),
    "truncated png": (lambda: ocv(".png", bgr(RGB))[:60], image_io.REASON_TRUNCATED_PNG),
    "truncated bmp": (lambda: ocv(".bmp", bgr(RGB))[:2000], image_io.REASON_TRUNCATED_BMP),
    "bmp 1-bit": (lambda: pil(Image.fromarray(RGB).convert("1"), "BMP"),
                  image_io.REASON_BMP_KIND),
    "bmp rle8": (lambda: _rle_bmp(), image_io.REASON_BMP_KIND),
    "truncated webp": (lambda: pil(Image.fromarray(RGB), "WEBP")[:100],
                       image_io.REASON_TRUNCATED_WEBP),
    "png bomb": (lambda: with_png_size(ocv(".png", RGB[..., 0]), 23000, 23000),
                 image_io.reason_too_large(23000, 23000)),
    "jpeg bomb": (lambda: with_jpeg_size(_full_jpeg(), 30000, 30000),
                  image_io.reason_too_large(30000, 30000)),
    "png 2^32 bomb": (lambda: with_png_size(ocv(".png", RGB[..., 0]), 2 ** 32 - 1, 2 ** 32 - 1),
                      image_io.reason_too_large(2 ** 32 - 1, 2 ** 32 - 1)),
    "gif bomb": (lambda: pil(palette()[0], "GIF")[:6] + b"\xff\xff\xff\xff"
                 + pil(palette()[0], "GIF")[10:], image_io.reason_too_large(65535, 65535)),
    "png of size 0": (lambda: with_png_size(ocv(".png", RGB[..., 0]), 0, 10),
                      image_io.REASON_NO_SIZE),
    "jpeg cut, end marker appended": (lambda: jpeg_cut_with_end(_full_jpeg()), PREMATURE_END),
    "png broken stream": (lambda: png_broken_stream(ocv(".png", bgr(RGB))),
                          image_io.reason_corrupt_data("PNG")),
    "png bad crc": (lambda: png_bad_crc(ocv(".png", bgr(RGB))),
                    image_io.reason_corrupt_data("PNG")),
}


def _rle_bmp():
    """An 8-bit BMP whose header says RLE8 compression."""
    data = bytearray(pil(palette()[0], "BMP"))
    data[30:34] = (1).to_bytes(4, "little")
    return bytes(data)


_graph_decode = tf.function(tf_image_io.decode_rgb,
                            input_signature=[tf.TensorSpec([], tf.string)])


def tf_decode(data):
    image, reason = _graph_decode(tf.constant(data))
    return image.numpy(), reason.numpy().decode()


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_both_decoders_give_the_same_pixels(name):
    data = ACCEPTED[name]()
    expected = image_io.decode_rgb(data, name)
    image, reason = tf_decode(data)
    assert reason == ""
    assert image.shape == expected.shape
    np.testing.assert_array_equal(image, expected)


def test_exif_orientation_turns_the_picture_upright():
    upright = image_io.decode_rgb(oriented(1))
    # Orientation 6: the stored pixels are displayed rotated 90 degrees clockwise.
    np.testing.assert_array_equal(image_io.decode_rgb(oriented(6)), np.rot90(upright, -1))
    np.testing.assert_array_equal(tf_decode(oriented(8))[0], np.rot90(upright, 1))


def test_cmyk_jpeg_within_one_grey_level():
    expected = image_io.decode_rgb(CMYK())
    image, reason = tf_decode(CMYK())
    assert reason == "" and image.shape == expected.shape
    assert np.abs(image.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_both_decoders_refuse_with_the_same_reason(name):
    make, reason = REFUSED[name]
    data = make()
    with pytest.raises(ImageReadError) as error:
        image_io.decode_rgb(data, name)
    assert error.value.reason == reason
    assert tf_decode(data)[1] == reason


def test_text_is_not_an_image():
    with pytest.raises(ImageReadError, match="not an image: a text file"):
        image_io.decode_rgb(b"hello, this is text", "notes.jpg")
    assert tf_decode(b"hello, this is text")[1] == tf_image_io.REASON_NOT_AN_IMAGE


def test_garbled_jpeg_data_is_refused_by_both():
    """libjpeg (OpenCV) warns first; TensorFlow's decoder fails, and the graph says so."""
    data = jpeg_garbled(_full_jpeg())
    with pytest.raises(ImageReadError, match=r"^garbled: corrupt JPEG data"):
        image_io.decode_rgb(data, "garbled")
    assert tf_decode(data)[1] == image_io.reason_corrupt_data("JPEG")
