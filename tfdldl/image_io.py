"""Read photos into uint8 RGB arrays, or fail with a reason a person can act on.

Both data preparation and prediction read images through :func:`read_rgb`, so a file
that trains also predicts, and a bad file is reported the same way everywhere.

What is handled: JPEG (EXIF orientation applied, CMYK and grayscale converted), PNG
(alpha composited on black, 16-bit scaled to 8-bit, grayscale expanded), and whatever
else OpenCV decodes (BMP, TIFF, WebP). What is refused with :class:`ImageReadError`:
missing and zero-byte files, files that are not images (e.g. text saved as ``.jpg``),
truncated JPEGs (OpenCV would silently return a half-grey picture), and data OpenCV
cannot decode.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

# File name endings taken for images (data_prep's adapters and tfdldl.predict).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

# Leading bytes of the formats we recognise before handing data to OpenCV.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"),
)
_JPEG_START_OF_SCAN = b"\xff\xda"
_JPEG_END_OF_IMAGE = b"\xff\xd9"


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
    """Read an image file as RGB.

    Args:
      path: the image file.
    Returns:
      uint8 [H, W, 3], RGB, EXIF orientation applied for JPEGs.
    Raises:
      ImageReadError: the file is missing, empty, not an image, truncated or corrupt.
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


def decode_rgb(data: bytes, where: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes as RGB.

    Args:
      data: the encoded file contents (JPEG, PNG, BMP, TIFF, WebP).
      where: names the source in error messages (a path, "request 3").
    Returns:
      uint8 [H, W, 3] RGB.
    Raises:
      ImageReadError: with the reason (empty, not an image, truncated JPEG, corrupt).
    """
    if len(data) == 0:
        raise ImageReadError(where, "empty file (0 bytes); re-download or remove it")
    kind = sniff_format(data)
    if kind is None:
        raise ImageReadError(where, f"not an image: {_describe_content(data)}")
    if kind == "JPEG" and data.rfind(_JPEG_END_OF_IMAGE) < data.rfind(_JPEG_START_OF_SCAN):
        raise ImageReadError(
            where, "truncated JPEG (no end-of-image marker after the image data); "
            "the file was cut short, re-download it")
    buffer = np.frombuffer(data, np.uint8)
    if kind == "JPEG":
        # IMREAD_COLOR applies EXIF orientation and converts CMYK/grayscale to BGR.
        decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    else:
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageReadError(where, f"corrupt {kind} data: OpenCV cannot decode it")
    return _to_rgb_uint8(decoded, where)


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
