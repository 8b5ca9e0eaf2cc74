"""Read photos into uint8 RGB arrays, or fail with a reason a person can act on.

Data preparation, prediction, evaluation's report, the host training pipeline and the
TFLite helpers read images through :func:`decode_rgb` / :func:`read_rgb` (NumPy + OpenCV);
the serving graph and the tf.data pipeline use its TensorFlow twin,
:mod:`tfdldl.tf_image_io`. Both follow ONE set of rules, and ``tests/test_decoder_parity.py``
pins them to each other:

- Formats: JPEG, PNG, BMP, GIF and WebP, recognised by their leading bytes (not the file
  name). TIFF is refused everywhere: TensorFlow has no TIFF decoder, so the serving graph
  cannot read it, and a format one path reads is read by all.
- Size: the declared width x height is read from the header BEFORE decoding, and an image
  of more than :data:`MAX_PIXELS` pixels is refused (a 600-byte JPEG can declare
  30000 x 30000 pixels: 2.7 GB once decoded).
- JPEG: libjpeg's accurate integer IDCT (OpenCV's, = ``tf.io.decode_jpeg(dct_method=
  "INTEGER_ACCURATE")``); the EXIF Orientation tag (APP1) applied; grayscale and CMYK
  converted to RGB (CMYK: TensorFlow's conversion may differ by 1 grey level). A file
  whose image data libjpeg warns about ("Corrupt JPEG data: ...") or that has no
  end-of-image marker after its image data is refused: OpenCV would silently return a
  partly grey picture (:mod:`tfdldl.libjpeg_warnings` reads the warnings from stderr).
  (The serving graph cannot read libjpeg's warnings; it finds the commonest, "premature
  end of data segment", by decoding twice: see :mod:`tfdldl.tf_image_io`.)
- PNG: 16-bit scaled to 8-bit (v * 255 // 65535), grayscale expanded, palettes expanded.
- BMP: uncompressed 8-bit (palette), 24-bit and 32-bit; a 32-bit BMP's fourth byte is
  ignored (most writers leave it 0, not an alpha). Other BMPs (1/4/16-bit, RLE) are
  refused: convert them to PNG.
- GIF and WebP: the first frame of an animation (a WebP animation's first frame is
  decoded on its own, at its own size).
- Alpha (PNG, GIF, WebP): composited on black, ``rint(rgb * alpha / 255)``: transparent
  pixels carry no face, whatever RGB they store.
- Orientation tags of other formats (PNG eXIf, WebP EXIF) are ignored.

What else is refused with :class:`ImageReadError`: missing and zero-byte files, files
that are not images (e.g. text saved as ``.jpg``), truncated files, and data the decoder
cannot decode.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from tfdldl import libjpeg_warnings

# File name endings taken for images (data_prep's adapters and tfdldl.predict). TIFF files
# are listed so that they are reported with the reason they are refused.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

# The largest image accepted on every path (declared width x height, read from the header
# before decoding): 8192 x 8192 = 67,108,864 pixels, 201 MB as uint8 RGB. Phone and camera
# photos (up to ~61 megapixels) pass; decompression bombs do not.
MAX_PIXELS = 8192 * 8192

# A JPEG's markers are walked up to its frame header; more segments than this is refused
# (no real file has more than a few dozen).
MAX_JPEG_SEGMENTS = 1024

# Leading bytes of the formats we recognise.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
_JPEG_START_OF_SCAN = b"\xff\xda"
_JPEG_END_OF_IMAGE = b"\xff\xd9"
# Start-of-frame markers (they carry the height and width): C0..CF except DHT, JPG, DAC.
JPEG_FRAME_MARKERS = tuple(m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC))
# Markers without a length field.
_JPEG_STANDALONE = tuple(range(0xD0, 0xD8)) + (0x01,)
# BMP variants TensorFlow's decode_bmp reads: (bits per pixel, compression) pairs.
BMP_SUPPORTED = ((8, 0), (24, 0), (32, 0), (32, 3))

# The reasons, shared word for word with tfdldl.tf_image_io (the serving graph's "error").
REASON_EMPTY = "empty file (0 bytes); re-download or remove it"
REASON_TIFF = ("TIFF is not supported (the serving graph cannot decode it, so no path "
               "reads it); convert it to PNG or JPEG")
REASON_TRUNCATED_JPEG = ("truncated JPEG (no end-of-image marker after the image data); "
                         "the file was cut short, re-download it")
REASON_JPEG_HEADER = "corrupt JPEG header: no frame header (SOF) before the image data"
REASON_TRUNCATED_PNG = "truncated PNG (no IEND chunk); the file was cut short, re-download it"
REASON_PNG_HEADER = "corrupt PNG header (no IHDR chunk first)"
REASON_TRUNCATED_BMP = "truncated BMP (less pixel data than its header declares)"
REASON_BMP_KIND = ("unsupported BMP variant (only uncompressed 8-, 24- and 32-bit BMPs are "
                   "read); convert it to PNG")
REASON_TRUNCATED_WEBP = "truncated WebP (shorter than its RIFF header declares)"
REASON_WEBP_KIND = "unsupported or corrupt WebP (no VP8, VP8L or VP8X chunk, or no frame)"
REASON_NO_SIZE = "the header declares an empty image (width or height 0)"
REASON_CORRUPT_JPEG_DATA = "corrupt JPEG data (libjpeg: {warning}); re-download or remove it"
# libjpeg's warning for a scan whose data ends before its last block (JWRN_HIT_MARKER).
JPEG_WARNING_PREMATURE_END = "Corrupt JPEG data: premature end of data segment"


def reason_corrupt_data(kind: str) -> str:
    """The refusal of a ``kind`` ("JPEG", "PNG", ...) file whose headers are intact but
    whose image data the decoder cannot decode."""
    return f"corrupt {kind} data: the decoder cannot decode it; re-download or remove it"


def reason_too_large(width: int, height: int) -> str:
    """The refusal of an image whose header declares ``width`` x ``height`` pixels."""
    return (f"declares {width} x {height} pixels, more than the limit of {MAX_PIXELS} "
            "(tfdldl.image_io.MAX_PIXELS, 8192 x 8192); downscale it before use")


class ImageReadError(ValueError):
    """An image file that cannot be turned into pixels; the message says why."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def sniff_format(data: bytes) -> str | None:
    """The image format named by the first bytes of ``data`` ("JPEG", "PNG", ...), or None."""
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB (the rules in the module docstring).

    Args:
      path: the image file.
    Returns:
      uint8 [H, W, 3], RGB, EXIF orientation applied for JPEGs.
    Raises:
      ImageReadError: the file is missing, empty, not an image, too large, truncated or
        corrupt; ``error.where`` is the path.
    """
    where = os.fspath(path)
    try:
        with open(where, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ImageReadError(where, "file does not exist") from None
    except IsADirectoryError:
        raise ImageReadError(where, "is a directory, not an image file") from None
    except OSError as error:
        raise ImageReadError(where, f"cannot be read ({error.strerror})") from None
    return decode_rgb(data, where)


def declared_size(data: bytes, where: str = "<bytes>") -> tuple[str, int, int]:
    """The format and the width x height a file's header declares, without decoding it.

    Args:
      data: the encoded file contents.
      where: names the source in error messages.
    Returns:
      (format, height, width), e.g. ("JPEG", 3000, 4000); the JPEG size as stored (before
      its EXIF orientation is applied).
    Raises:
      ImageReadError: empty, not an image, TIFF, a header too short or corrupt to declare
        a size, an unsupported BMP variant, or a truncated PNG/BMP/WebP.
    """
    if len(data) == 0:
        raise ImageReadError(where, REASON_EMPTY)
    kind = sniff_format(data)
    if kind is None:
        raise ImageReadError(where, f"not an image: {_describe_content(data)}")
    if kind == "TIFF":
        raise ImageReadError(where, REASON_TIFF)
    height, width = {"JPEG": _jpeg_size, "PNG": _png_size, "BMP": _bmp_size,
                     "GIF": _gif_size, "WEBP": _webp_size}[kind](data, where)
    return kind, height, width


def check_size(data: bytes, where: str = "<bytes>") -> tuple[str, int, int]:
    """:func:`declared_size`, refusing an empty image or one above :data:`MAX_PIXELS`.

    Raises:
      ImageReadError: as :func:`declared_size`, or the declared size is 0 or too large.
    """
    kind, height, width = declared_size(data, where)
    if height <= 0 or width <= 0:
        raise ImageReadError(where, REASON_NO_SIZE)
    if height * width > MAX_PIXELS:
        raise ImageReadError(where, reason_too_large(width, height))
    return kind, height, width


def decode_rgb(data: bytes, where: str = "<bytes>", jpeg_warnings: bool = True) -> np.ndarray:
    """Decode encoded image bytes as RGB (the rules in the module docstring).

    Args:
      data: the encoded file contents (JPEG, PNG, BMP, GIF, WebP).
      where: names the source in error messages (a path, "request 3").
      jpeg_warnings: refuse a JPEG libjpeg warns about (costs a redirection of stderr per
        JPEG); False only for data checked before, e.g. faces in TFRecords.
    Returns:
      uint8 [H, W, 3] RGB.
    Raises:
      ImageReadError: with the reason (empty, not an image, TIFF, too large, truncated,
        corrupt).
    """
    kind, _, _ = check_size(data, where)
    if kind == "JPEG":
        if data.rfind(_JPEG_END_OF_IMAGE) < data.rfind(_JPEG_START_OF_SCAN):
            raise ImageReadError(where, REASON_TRUNCATED_JPEG)
        # IMREAD_COLOR applies EXIF orientation and converts CMYK/grayscale to BGR.
        decoded = (_decode_jpeg_strictly(data, where) if jpeg_warnings
                   else _imdecode(data, cv2.IMREAD_COLOR, kind, where))
    elif kind == "BMP":
        decoded = _imdecode(data, cv2.IMREAD_COLOR, kind, where)  # the 4th byte is no alpha
    else:
        if kind == "WEBP":
            data = webp_first_frame(data, where)
        decoded = _imdecode(data, cv2.IMREAD_UNCHANGED, kind, where)
    return _to_rgb_uint8(decoded, where)


def _imdecode(data: bytes, flags: int, kind: str, where: str) -> np.ndarray:
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as error:
        raise ImageReadError(where, f"{reason_corrupt_data(kind)} (OpenCV: "
                             f"{str(error).strip().splitlines()[-1]})") from None
    if decoded is None or decoded.size == 0:
        raise ImageReadError(where, reason_corrupt_data(kind))
    return decoded


def _decode_jpeg_strictly(data: bytes, where: str) -> np.ndarray:
    """cv2.imdecode of a JPEG, refusing it when libjpeg warns about corrupt data."""
    decoded, warnings = libjpeg_warnings.capture_warnings(
        lambda: _imdecode(data, cv2.IMREAD_COLOR, "JPEG", where))
    if warnings:
        raise ImageReadError(where, REASON_CORRUPT_JPEG_DATA.format(warning=warnings[0]))
    return decoded


def _to_rgb_uint8(decoded: np.ndarray, where: str) -> np.ndarray:
    """OpenCV's BGR/BGRA/gray array of any integer depth -> uint8 RGB [H, W, 3]."""
    if decoded.dtype == np.uint16:
        decoded = (decoded.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise ImageReadError(
            where, f"unsupported pixel type {decoded.dtype}; convert it to 8-bit JPEG or PNG")
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    channels = decoded.shape[2]
    if channels == 1:
        return cv2.cvtColor(decoded[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if channels == 4:
        # Composite on black: transparent pixels carry no face, whatever RGB they store.
        alpha = decoded[:, :, 3:4].astype(np.float32) / 255.0
        rgb = cv2.cvtColor(decoded[:, :, :3], cv2.COLOR_BGR2RGB).astype(np.float32)
        return np.rint(rgb * alpha).astype(np.uint8)
    raise ImageReadError(where, f"unsupported channel count {channels}")


# -- headers -----------------------------------------------------------------------------

def _uint(data: bytes, start: int, count: int, order: str) -> int:
    """An unsigned integer of ``count`` bytes at ``start`` (zeros past the end)."""
    return int.from_bytes(data[start:start + count].ljust(count, b"\0"), order)


def _jpeg_size(data: bytes, where: str) -> tuple[int, int]:
    """(height, width) from the first start-of-frame segment."""
    position = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        if position + 4 > len(data) or data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte
            position += 1
            continue
        if marker in JPEG_FRAME_MARKERS:
            return (_uint(data, position + 5, 2, "big"), _uint(data, position + 7, 2, "big"))
        if marker in (0xDA, 0xD9):
            break
        position += 2 if marker in _JPEG_STANDALONE else 2 + _uint(data, position + 2, 2, "big")
    raise ImageReadError(where, REASON_JPEG_HEADER)


def _png_size(data: bytes, where: str) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ImageReadError(where, REASON_PNG_HEADER)
    if b"IEND" not in data[33:]:
        raise ImageReadError(where, REASON_TRUNCATED_PNG)
    return _uint(data, 20, 4, "big"), _uint(data, 16, 4, "big")


def _gif_size(data: bytes, where: str) -> tuple[int, int]:
    return _uint(data, 8, 2, "little"), _uint(data, 6, 2, "little")


def _bmp_size(data: bytes, where: str) -> tuple[int, int]:
    header = _uint(data, 14, 4, "little")
    bits, compression = _uint(data, 28, 2, "little"), _uint(data, 30, 4, "little")
    if header < 40 or (bits, compression) not in BMP_SUPPORTED:
        raise ImageReadError(where, REASON_BMP_KIND)
    width = _uint(data, 18, 4, "little")
    height = _uint(data, 22, 4, "little")
    height = abs(height - (1 << 32) if height >= 1 << 31 else height)  # < 0: top-down rows
    width = 0 if width >= 1 << 31 else width
    row = (bits * width + 31) // 32 * 4
    if len(data) < _uint(data, 10, 4, "little") + row * height:
        raise ImageReadError(where, REASON_TRUNCATED_BMP)
    return height, width


def _webp_size(data: bytes, where: str) -> tuple[int, int]:
    if len(data) < 8 + _uint(data, 4, 4, "little"):
        raise ImageReadError(where, REASON_TRUNCATED_WEBP)
    chunk = data[12:16]
    if chunk == b"VP8 ":
        return _uint(data, 28, 2, "little") & 0x3FFF, _uint(data, 26, 2, "little") & 0x3FFF
    if chunk == b"VP8L":
        bits = _uint(data, 21, 4, "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X":
        return _uint(data, 27, 3, "little") + 1, _uint(data, 24, 3, "little") + 1
    raise ImageReadError(where, REASON_WEBP_KIND)


_WEBP_ANIMATION_FLAG = 0x02
_WEBP_ALPHA_FLAG = 0x10
# An ANMF chunk's payload: X, Y, width - 1, height - 1, duration (3 bytes each), flags.
_ANMF_HEADER = 16


def webp_first_frame(data: bytes, where: str = "<bytes>") -> bytes:
    """An animated WebP's first frame as a still WebP file; a still WebP as it is.

    The frame is taken on its own (its own width and height, no canvas offset), so every
    path decodes the same picture (TensorFlow's decode_webp mishandles some animations).

    Raises:
      ImageReadError: an animated WebP without a frame.
    """
    if data[12:16] != b"VP8X" or not data[20] & _WEBP_ANIMATION_FLAG:
        return data
    position = 30
    while position + 8 <= len(data):
        size = _uint(data, position + 4, 4, "little")
        if data[position:position + 4] == b"ANMF":
            frame = data[position + 8 + _ANMF_HEADER:position + 8 + size]
            width = _uint(data, position + 14, 3, "little") + 1
            height = _uint(data, position + 17, 3, "little") + 1
            return still_webp(frame, width, height)
        position += 8 + size + (size & 1)
    raise ImageReadError(where, REASON_WEBP_KIND)


def still_webp(frame: bytes, width: int, height: int) -> bytes:
    """A WebP file holding one frame's chunks (ALPH + VP8, or VP8, or VP8L)."""
    if frame[:4] == b"ALPH":
        frame = (b"VP8X" + (10).to_bytes(4, "little") + bytes([_WEBP_ALPHA_FLAG, 0, 0, 0])
                 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
                 + frame)
    return b"RIFF" + (4 + len(frame)).to_bytes(4, "little") + b"WEBP" + frame


def _describe_content(data: bytes) -> str:
    """A short description of non-image bytes, e.g. ``text starting 'hello'``."""
    head = data[:32]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"unknown format, first bytes {head[:8]!r}"
    if text.isprintable() or all(ch.isprintable() or ch.isspace() for ch in text):
        return f"a text file starting {text[:24]!r}; the file name's extension is wrong"
    return f"unknown format, first bytes {head[:8]!r}"
