"""The same face gives the same age whatever file it comes in, on every path (issue 9),
and hostile files are refused fast with a reason (issue 12, cases 9-11).

Ages are checked with the shipped UTKFace model (the highest version in
saved_models/utkface_tinyagenet) on a
real UTKFace face: an untrained model would answer nearly the same age for any input.
"""

import io
import os
import time

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from data_prep.duplicates import read_thumbnails
from tfdldl import export, image_io, predict
from tfdldl.api import SHIPPED_MODEL
from tfdldl.image_io import ImageReadError, read_rgb
from tfdldl.inference import load_predictor
from tfdldl.serving_model import versions
import test_decoder_parity as parity
from test_build import GOOD

SHIPPED_VERSION = max(versions(SHIPPED_MODEL))
SHIPPED = os.path.join(SHIPPED_MODEL, str(SHIPPED_VERSION))
FACE = "26_0_0_20170117170723363.jpg.chip.jpg"
YEARS = 0.05
# EXIF orientation -> how the stored pixels relate to the upright face.
STORED = {2: lambda rgb: rgb[:, ::-1], 3: lambda rgb: rgb[::-1, ::-1],
          6: lambda rgb: np.rot90(rgb, 1), 8: lambda rgb: np.rot90(rgb, -1)}


def _pil(picture, fmt, **options):
    """A PIL image or uint8 RGB array, encoded by Pillow."""
    if not isinstance(picture, Image.Image):
        picture = Image.fromarray(np.ascontiguousarray(picture))
    stream = io.BytesIO()
    picture.save(stream, fmt, **options)
    return stream.getvalue()


def _jpeg(rgb, orientation=1):
    exif = Image.Exif()
    exif[0x0112] = orientation
    # Quality 100 without chroma subsampling: as close to the pixels as JPEG gets.
    return _pil(rgb, "JPEG", quality=100, subsampling=0, exif=exif)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """(predictor, ServingModel) of the shipped model, re-exported with today's signatures."""
    path = export.reexport_saved_model(SHIPPED, tmp_path_factory.mktemp("shipped"),
                                       "utkface_tinyagenet", SHIPPED_VERSION)
    return load_predictor(path), export.load_serving(path)


def test_reexport_keeps_the_weights_and_assets(shipped):
    predictor, serving = shipped
    original = export.load_serving(SHIPPED)
    faces = np.random.default_rng(0).uniform(0, 255, (3, 128, 128, 3)).astype(np.float32)
    np.testing.assert_array_equal(serving.predict_images(faces)["value"],
                                  original.predict_images(faces)["value"])
    assert serving.config == original.config and predictor.face_size == 128


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


def _made_upright(data: bytes) -> bytes:
    """An oriented JPEG turned upright by another decoder (Pillow's exif_transpose), as PNG:
    the upright file of exactly the pixels the JPEG holds."""
    return _pil(np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))), "PNG")


def _predict_aligned(predictor, paths, flip):
    """``tfdldl.predict --aligned`` on files (``--no_flip`` unless ``flip``): {path: row}."""
    from tfdldl.face_align import FaceAligner

    aligner = FaceAligner(output_size=predictor.face_size)
    return {rows[0].file: rows[0] for _, rows in predict.predict_paths(
        paths, predictor, aligner, aligned=True, flip=flip)}


def test_every_format_and_orientation_gives_the_same_age_on_predict_and_serving(
        shipped, files, tmp_path):
    predictor, serving = shipped
    paths = {}
    for name, data in files.items():
        paths[name] = str(tmp_path / (name.replace(" ", "_") + ".img"))
        with open(paths[name], "wb") as stream:
            stream.write(data)
    plain = _predict_aligned(predictor, list(paths.values()), flip=False)
    flipped = _predict_aligned(predictor, list(paths.values()), flip=True)
    for name, data in files.items():
        row, row_flipped = plain[paths[name]], flipped[paths[name]]
        alone = serving([data])
        alone_flipped = serving.predict_flip_averaged([data])
        if name == "tiff":  # no TIFF decoder in the graph: refused alike, with the reason
            assert row.status == predict.STATUS_ERROR and row.message == image_io.REASON_TIFF
            assert alone["error"][0].decode() == image_io.REASON_TIFF
            assert alone_flipped["error"][0].decode() == image_io.REASON_TIFF
            assert np.isnan(alone["value"][0]) and np.isnan(alone_flipped["value"][0])
            continue
        assert row.status == predict.STATUS_FACE, (name, row)
        assert alone["error"][0] == b""
        assert abs(alone["value"][0] - row.value) <= YEARS, name
        assert abs(alone_flipped["value"][0] - row_flipped.value) <= YEARS, name
        pixels = read_rgb(paths[name])[None].astype(np.float32)
        assert abs(serving.predict_images(pixels)["value"][0] - row.value) <= YEARS, name
        if name.startswith("jpeg exif"):  # rotated or mirrored: the upright face's age
            made_upright = serving([_made_upright(data)])["value"][0]
            assert abs(row.value - made_upright) <= YEARS, name
            assert abs(alone["value"][0] - made_upright) <= YEARS, name


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
def tiny(untrained_tiny_model):
    """The session's tiny untrained SavedModel (64 px): (ServingModel, predictor)."""
    path, _ = untrained_tiny_model
    return export.load_serving(path), load_predictor(path)


@pytest.mark.parametrize("name,data,size", [
    ("bomb.png", _png_bomb(23000, 23000), (23000, 23000)),
    ("bomb.jpg", _jpeg_bomb(30000, 30000), (30000, 30000)),
    ("huge.png", _png_bomb(2 ** 16, 2 ** 16), (2 ** 16, 2 ** 16))])
def test_decompression_bombs_are_refused_fast_everywhere(tiny, tmp_path, name, data, size):
    serving, predictor = tiny
    reason = image_io.reason_too_large(*size)
    bomb = tmp_path / name
    bomb.write_bytes(data)
    small = cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    serving([small])  # the first call of a loaded signature is slow: not the bomb's doing
    started = time.monotonic()
    with pytest.raises(ImageReadError) as error:  # data_prep's and predict's reader
        read_rgb(bomb)
    assert error.value.reason == reason and error.value.where == str(bomb)
    assert read_thumbnails(str(bomb))[1] is None  # data_prep's duplicate fingerprinting
    [(_, rows)] = predict.predict_paths([str(bomb)], predictor, None)
    assert rows[0].status == predict.STATUS_ERROR and rows[0].message == reason
    outputs = serving([data, small])
    assert outputs["error"][0].decode() == reason and outputs["error"][1] == b""
    assert np.isnan(outputs["value"][0]) and np.isfinite(outputs["value"][1])
    assert time.monotonic() - started < 5  # before: 36 s and 8.2 GB in serving_default


def test_serving_refuses_more_than_the_batch_limit_with_a_clear_error(tiny):
    serving, _ = tiny
    tiny_png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    started = time.monotonic()
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f"at most {export.MAX_BATCH} per call"):
        serving([tiny_png] * 10_000)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most"):
        serving.predict_images(np.zeros((export.MAX_BATCH + 1, 4, 4, 3), np.float32))
    assert time.monotonic() - started < 20
    assert len(serving([tiny_png] * export.MAX_BATCH)["value"]) == export.MAX_BATCH


def test_damaged_data_behind_intact_headers_gets_its_own_error_in_the_signature(
        tiny, utkface_dir):
    """Through the SavedModel's own signatures (tf.saved_model.load, as TF Serving calls
    them): a batch mixing good real faces with JPEG and PNG files damaged behind intact
    headers answers every good image as alone, and NaN with its reason for each bad one."""
    serving, _ = tiny
    signatures = tf.saved_model.load(serving.path).signatures
    faces = [open(os.path.join(utkface_dir, name), "rb").read() for name in (FACE, GOOD[0])]
    png = cv2.imencode(".png", cv2.imdecode(np.frombuffer(faces[1], np.uint8), 1))[1].tobytes()
    corrupt_png = image_io.reason_corrupt_data("PNG")
    batch = [(faces[0], ""), (parity.jpeg_garbled(faces[0]), image_io.reason_corrupt_data("JPEG")),
             (png, ""), (parity.jpeg_zeroed(faces[1]), parity.PREMATURE_END),
             (parity.png_broken_stream(png), corrupt_png),
             (parity.jpeg_cut_with_end(faces[0]), parity.PREMATURE_END),
             (parity.png_bad_crc(png), corrupt_png),
             (faces[1][:len(faces[1]) // 2], image_io.REASON_TRUNCATED_JPEG), (faces[1], "")]
    for name in (export.SERVING_DEFAULT, export.SERVING_FLIP_AVERAGED):
        together = signatures[name](images=tf.constant([data for data, _ in batch]))
        for index, (data, reason) in enumerate(batch):
            alone = signatures[name](images=tf.constant([data]))
            assert together["error"][index].numpy().decode() == reason, (name, index)
            for key in ("value", "stddev", "distribution"):
                if reason:
                    assert np.isnan(together[key][index].numpy()).all(), (name, index, key)
                else:  # the same, up to float32 rounding of batch-size-dependent kernels
                    np.testing.assert_allclose(together[key][index], alone[key][0], rtol=1e-6,
                                               atol=1e-7, err_msg=f"{name} {index} {key}")
    for data, reason in batch:  # predict's and data_prep's reader refuses the same files
        if reason:
            with pytest.raises(ImageReadError) as error:
                image_io.decode_rgb(data)
            # Garbled JPEG data: libjpeg warns (OpenCV's path) before it fails (the graph's).
            garbled = reason == image_io.reason_corrupt_data("JPEG")
            assert error.value.reason.startswith("corrupt JPEG data") if garbled \
                else error.value.reason == reason


def test_a_whole_photo_stored_rotated_gives_the_upright_photos_age(shipped, utkface_dir,
                                                                    tmp_path):
    """predict detects and aligns the face of a photo with EXIF orientation 2, 3, 6, 8 as
    it does on the same photo stored upright."""
    from tfdldl.face_align import FaceAligner

    predictor, _ = shipped
    chip = read_rgb(os.path.join(utkface_dir, FACE))
    rng = np.random.default_rng(1)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (300, 340, 3), dtype=np.uint8), (9, 9), 0)
    photo[40:240, 90:290] = chip
    paths = []
    for k, stored in STORED.items():
        data = _jpeg(stored(photo), k)
        paths += [tmp_path / f"rotated_{k}.jpg", tmp_path / f"upright_{k}.png"]
        paths[-2].write_bytes(data)
        paths[-1].write_bytes(_made_upright(data))
    aligner = FaceAligner(output_size=predictor.face_size)
    rows = [rows for _, rows in predict.predict_paths([str(p) for p in paths], predictor,
                                                      aligner, flip=False)]
    for rotated, upright in zip(rows[::2], rows[1::2]):
        assert rotated[0].status == upright[0].status == predict.STATUS_FACE
        assert abs(rotated[0].value - upright[0].value) <= YEARS, rotated[0].file
        assert abs(rotated[0].x - upright[0].x) < 0.5 and abs(rotated[0].y - upright[0].y) < 0.5


def test_data_prep_skips_damaged_and_bomb_files_with_their_reasons(utkface_dir, tmp_path):
    """Issue 12 cases 9 and 10 through a real build: each file counted with its reason."""
    from data_prep import build as build_module
    from test_build import _config

    from tfdldl.manifest import read_manifest

    images = tmp_path / "images"
    images.mkdir()
    for name in GOOD[:4]:
        (images / name).write_bytes(open(os.path.join(utkface_dir, name), "rb").read())
    data = parity.jpeg_zeroed(open(os.path.join(utkface_dir, GOOD[4]), "rb").read())
    bad = {"30_0_0_20170101000000011.jpg.chip.jpg": data,
           "31_0_0_20170101000000012.jpg.chip.jpg": _png_bomb(23000, 23000),
           "32_0_0_20170101000000013.jpg.chip.jpg": _jpeg_bomb(30000, 30000)}
    for name, content in bad.items():
        (images / name).write_bytes(content)
    out = tmp_path / "tfrecords"
    manifest = build_module.build(_config(images, out, workers=1), log=lambda line: None)
    assert manifest["skips"]["by_reason"] == {"unreadable_image": 3}
    rows = [line.rstrip("\n").split("\t") for line in open(out / "skipped.tsv")][1:]
    details = {os.path.basename(path): (reason, detail) for path, reason, detail in rows}
    zeroed, png, jpeg = (details[name] for name in bad)
    assert zeroed[0] == "unreadable_image"
    assert parity.PREMATURE_END in zeroed[1]
    assert image_io.reason_too_large(23000, 23000) in png[1]
    assert image_io.reason_too_large(30000, 30000) in jpeg[1]
    assert sum(read_manifest(out).counts.values()) == 4
