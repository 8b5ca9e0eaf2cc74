"""The same face gives the same age whatever file it comes in, on every path (issue 9),
and hostile files are refused fast with a reason (issue 12, cases 9-11).

Ages are checked with the shipped UTKFace model (saved_models/utkface_tinyagenet/1) on a
real UTKFace face: an untrained model would answer nearly the same age for any input.
"""

import io
import os
import time

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_prep.duplicates import read_thumbnails
from tfdldl import export, image_io, predict
from tfdldl.image_io import ImageReadError, read_rgb
from tfdldl.inference import load_predictor, predict_flip_averaged
from tfdldl.label_space import AGE
from tiny_models import REPO_ROOT, tiny_saved_model

SHIPPED = os.path.join(REPO_ROOT, "saved_models", "utkface_tinyagenet", "1")
FACE = "26_0_0_20170117170723363.jpg.chip.jpg"
YEARS = 0.05
# EXIF orientation -> how the stored pixels relate to the upright face.
STORED = {2: lambda rgb: rgb[:, ::-1], 3: lambda rgb: rgb[::-1, ::-1],
          6: lambda rgb: np.rot90(rgb, 1), 8: lambda rgb: np.rot90(rgb, -1)}


def _pil(rgb, fmt, **options):
    stream = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(stream, fmt, **options)
    return stream.getvalue()


def _jpeg(rgb, orientation=1):
    exif = Image.Exif()
    exif[0x0112] = orientation
    # Quality 100 without chroma subsampling: rotating the stored pixels changes them by
    # well under a grey level, so any larger age difference is the decoder's.
    return _pil(rgb, "JPEG", quality=100, subsampling=0, exif=exif)


@pytest.fixture(scope="module")
def shipped():
    if not os.path.isfile(os.path.join(SHIPPED, "saved_model.pb")):
        pytest.skip(f"{SHIPPED} is absent")
    serving = export.load_serving(SHIPPED)
    if export.ERROR_OUTPUT not in serving.signatures["serving_default"].structured_outputs:
        pytest.skip(f"{SHIPPED} was exported before the serving graph decoded with "
                    "tfdldl.tf_image_io; re-export it with tfdldl.export")
    return load_predictor(SHIPPED), serving


@pytest.fixture(scope="module")
def aligned(utkface_dir, shipped):
    """A real aligned face at the model's face size, uint8 RGB."""
    chip = read_rgb(os.path.join(utkface_dir, FACE))
    size = shipped[0].face_size
    return cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def files(aligned):
    """{name: encoded bytes} of the aligned face in every format and orientation."""
    made = {"jpeg": _jpeg(aligned), "png": _pil(aligned, "PNG"), "bmp": _pil(aligned, "BMP"),
            "webp": _pil(aligned, "WEBP", lossless=True), "tiff": _pil(aligned, "TIFF"),
            "gif": _pil(Image.fromarray(aligned).quantize(256), "GIF")}
    made.update({f"jpeg exif {k}": _jpeg(stored(aligned), k) for k, stored in STORED.items()})
    return made


def _predict_aligned(predictor, paths):
    """``tfdldl.predict --aligned`` on files: {path: row}."""
    from tfdldl.face_align import FaceAligner

    aligner = FaceAligner(output_size=predictor.face_size)
    return {rows[0].file: rows[0]
            for _, rows in predict.predict_paths(paths, predictor, aligner, aligned=True)}


def test_every_format_and_orientation_gives_the_same_age_on_predict_and_serving(
        shipped, files, tmp_path):
    predictor, serving = shipped
    paths = {}
    for name, data in files.items():
        paths[name] = str(tmp_path / (name.replace(" ", "_") + ".img"))
        with open(paths[name], "wb") as stream:
            stream.write(data)
    rows = _predict_aligned(predictor, list(paths.values()))
    upright = rows[paths["jpeg"]].value
    for name, data in files.items():
        row = rows[paths[name]]
        alone = serving([data])
        flipped = serving.predict_flip_averaged([data])
        if name == "tiff":  # no TIFF decoder in the graph: refused alike, with the reason
            assert row.status == predict.STATUS_ERROR and row.message == image_io.REASON_TIFF
            assert alone["error"][0].decode() == image_io.REASON_TIFF
            assert np.isnan(alone["value"][0]) and np.isnan(flipped["value"][0])
            continue
        assert row.status == predict.STATUS_FACE, (name, row)
        assert alone["error"][0] == b""
        assert abs(alone["value"][0] - row.value) <= YEARS, name
        pixels = read_rgb(paths[name])[None].astype(np.float32)
        assert abs(flipped["value"][0] - predict_flip_averaged(predictor, pixels)["value"][0]
                   ) <= YEARS, name
        assert abs(serving.predict_images(pixels)["value"][0] - row.value) <= YEARS, name
        if name.startswith("jpeg"):  # the rotated and mirrored files: the upright face
            assert abs(row.value - upright) <= YEARS, name
            assert abs(alone["value"][0] - upright) <= YEARS, name


def test_a_mixed_batch_answers_each_image_as_alone(shipped, files):
    _, serving = shipped
    bomb = _png_bomb(23000, 23000)
    names = sorted(files) + ["text", "bomb"]
    batch = [files[name] for name in sorted(files)] + [b"not a picture at all", bomb]
    together = serving(batch)
    for index, name in enumerate(names):
        alone = serving([batch[index]])
        assert together["error"][index] == alone["error"][0], name
        np.testing.assert_allclose(together["value"][index], alone["value"][0], atol=1e-4,
                                   err_msg=name)
    assert together["error"][-1].decode() == image_io.reason_too_large(23000, 23000)
    assert together["error"][-2].decode().startswith("not an image")
    assert np.isnan(together["distribution"][-2:]).all()
    assert np.isfinite(together["value"][names.index("png")])


def _png_bomb(width, height):
    """A small grayscale PNG whose header declares ``width`` x ``height`` pixels."""
    import zlib

    data = cv2.imencode(".png", np.zeros((64, 64), np.uint8))[1].tobytes()
    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + data[24:29]
    return data[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + data[33:]


def _jpeg_bomb(width, height):
    """A tiny JPEG whose frame header declares ``width`` x ``height`` pixels."""
    data = cv2.imencode(".jpg", np.full((16, 16), 128, np.uint8))[1].tobytes()
    sof = data.index(b"\xff\xc0")
    return (data[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + data[sof + 9:])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny untrained SavedModel (32 px), loaded."""
    path, _ = tiny_saved_model(str(tmp_path_factory.mktemp("tiny")), AGE, 32)
    return path, export.load_serving(path)


@pytest.mark.parametrize("name,data,size", [
    ("bomb.png", _png_bomb(23000, 23000), (23000, 23000)),
    ("bomb.jpg", _jpeg_bomb(30000, 30000), (30000, 30000)),
    ("huge.png", _png_bomb(2 ** 16, 2 ** 16), (2 ** 16, 2 ** 16))])
def test_decompression_bombs_are_refused_fast_everywhere(tiny, tmp_path, name, data, size):
    path, serving = tiny
    reason = image_io.reason_too_large(*size)
    bomb = tmp_path / name
    bomb.write_bytes(data)
    started = time.monotonic()
    with pytest.raises(ImageReadError) as error:  # data_prep's and predict's reader
        read_rgb(bomb)
    assert error.value.reason == reason and error.value.where == str(bomb)
    assert read_thumbnails(str(bomb))[1] is None  # data_prep's duplicate fingerprinting
    predictor = load_predictor(path)
    [(_, rows)] = predict.predict_paths([str(bomb)], predictor, None)
    assert rows[0].status == predict.STATUS_ERROR and rows[0].message == reason
    outputs = serving([data, cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))[1].tobytes()])
    assert outputs["error"][0].decode() == reason and outputs["error"][1] == b""
    assert np.isnan(outputs["value"][0]) and np.isfinite(outputs["value"][1])
    assert time.monotonic() - started < 20


def test_serving_refuses_more_than_the_batch_limit_with_a_clear_error(tiny):
    _, serving = tiny
    tiny_png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    started = time.monotonic()
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f"at most {export.MAX_BATCH} per call"):
        serving([tiny_png] * 10_000)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most"):
        serving.predict_images(np.zeros((export.MAX_BATCH + 1, 4, 4, 3), np.float32))
    assert time.monotonic() - started < 20
    assert len(serving([tiny_png] * export.MAX_BATCH)["value"]) == export.MAX_BATCH
