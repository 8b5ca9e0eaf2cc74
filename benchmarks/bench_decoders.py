"""Decoder parity: the same face in every file format, through every path, in years.

    python benchmarks/bench_decoders.py --model saved_models/utkface_tinyagenet/6 \
        --images ../shared/datasets/utkface/images --faces 30

Each face (a UTKFace chip resized to the model's face size, as an aligned face) is written
as JPEG, gray JPEG, PNG, RGBA PNG, BMP, GIF, WebP (lossy and lossless), TIFF and as JPEGs
stored rotated/mirrored with EXIF orientation 2, 3, 6, 8. The model is re-exported with
this version's signatures (tfdldl.export.reexport_saved_model), then each file goes
through ``tfdldl.predict --aligned`` (read_rgb + predict_images), ``serving_default`` alone
and in one mixed batch, ``serving_flip_averaged`` (against predict's flip averaging), and
the JPEG through the training decoders (tf.data, host pipeline, evaluate). Printed: the
largest |difference| in years over the faces, per file kind and path; "before" columns use
the decoders this project had before (tf.io.decode_image in the graph, libjpeg's fast IDCT
in training).
"""

from __future__ import annotations

import glob
import io
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

flags.DEFINE_string("model", "saved_models/utkface_tinyagenet/6", "SavedModel version folder.")
flags.DEFINE_string("images", "../shared/datasets/utkface/images", "Folder of face chips.")
flags.DEFINE_integer("faces", 30, "Faces to measure (evenly spread over the sorted files).")
FLAGS = flags.FLAGS

ORIENTED = {2: lambda rgb: rgb[:, ::-1], 3: lambda rgb: rgb[::-1, ::-1],
            6: lambda rgb: np.rot90(rgb, 1), 8: lambda rgb: np.rot90(rgb, -1)}


def _pil(image, fmt, **options) -> bytes:
    stream = io.BytesIO()
    image.save(stream, fmt, **options)
    return stream.getvalue()


def files_of(rgb: np.ndarray) -> dict[str, bytes]:
    """The face in every file kind measured."""
    image = Image.fromarray(rgb)
    alpha = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    made = {"jpeg": _pil(image, "JPEG", quality=90),
            "jpeg gray": _pil(image.convert("L"), "JPEG", quality=90),
            "png": _pil(image, "PNG"), "png rgba": _pil(Image.fromarray(alpha), "PNG"),
            "bmp": _pil(image, "BMP"), "gif": _pil(image.quantize(256), "GIF"),
            "webp lossy": _pil(image, "WEBP", quality=90),
            "webp lossless": _pil(image, "WEBP", lossless=True), "tiff": _pil(image, "TIFF")}
    for orientation, stored in ORIENTED.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        made[f"jpeg exif {orientation}"] = _pil(
            Image.fromarray(np.ascontiguousarray(stored(rgb))), "JPEG", quality=100,
            subsampling=0, exif=exif)
    return made


class Parity:
    """The largest |age difference| in years per (file kind, path) over the faces measured,
    and the verdict on each file kind every path refuses."""

    def __init__(self, predictor, serving):
        self.predictor, self.serving = predictor, serving
        self.worst: dict[tuple[str, str], float] = {}
        self.refused: dict[str, str] = {}

    def note(self, kind: str, column: str, difference) -> None:
        key = (kind, column)
        self.worst[key] = max(self.worst.get(key, 0.0), float(np.max(np.abs(difference))))

    def age(self, pixels) -> float:
        """The Keras predictor's age of one aligned face, uint8/float [size, size, 3]."""
        return self.predictor.predict_images(np.asarray(pixels, np.float32)[None])["value"][0]

    def files(self, made: dict[str, bytes]) -> None:
        """Every file kind through ``serving_default`` alone and in one mixed batch, and
        ``serving_flip_averaged``, against predict on the same file."""
        import tensorflow as tf

        from tfdldl.image_io import ImageReadError, decode_rgb
        from tfdldl.inference import predict_flip_averaged

        kinds = sorted(made)
        batch = self.serving([made[kind] for kind in kinds])
        for index, kind in enumerate(kinds):
            data = made[kind]
            alone = self.serving([data])
            try:
                pixels = decode_rgb(data, kind)
            except ImageReadError as error:  # TIFF: refused on every path
                same = {error.reason, alone["error"][0].decode(),
                        batch["error"][index].decode()}
                self.refused[kind] = "refused alike" if len(same) == 1 else f"DIFFER: {same}"
                continue
            predicted = self.age(pixels)
            before = self.age(tf.io.decode_image(data, channels=3, expand_animations=False))
            self.note(kind, "serving_default before", before - predicted)
            self.note(kind, "serving_default", alone["value"][0] - predicted)
            self.note(kind, "mixed batch vs alone", batch["value"][index] - alone["value"][0])
            flipped = predict_flip_averaged(self.predictor, pixels[None].astype(np.float32))
            self.note(kind, "serving_flip_averaged",
                      self.serving.predict_flip_averaged([data])["value"][0]
                      - flipped["value"][0])

    def orientations(self, made: dict[str, bytes], rgb: np.ndarray) -> None:
        """The EXIF-oriented JPEGs, before (tf.io.decode_image) and through predict, against
        the upright JPEG."""
        import tensorflow as tf

        from tfdldl.image_io import decode_rgb

        reference = self.age(decode_rgb(_pil(Image.fromarray(rgb), "JPEG", quality=100,
                                             subsampling=0)))
        for orientation in ORIENTED:
            data = made[f"jpeg exif {orientation}"]
            old = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
            self.note(f"jpeg exif {orientation}", "upright, serving before",
                      self.age(old) - reference)
            self.note(f"jpeg exif {orientation}", "upright, predict",
                      self.age(decode_rgb(data)) - reference)

    def training(self, jpeg: bytes, size: int) -> None:
        """The JPEG through the training decoders (before and now, tf.data, host pipeline,
        evaluate) against predict."""
        import tensorflow as tf

        from tfdldl import evaluate, host_pipeline, tf_image_io
        from tfdldl.image_io import decode_rgb

        predicted = self.age(decode_rgb(jpeg))
        fast = tf.io.decode_jpeg(jpeg, channels=3).numpy()
        self.note("jpeg", "training before (fast IDCT)", self.age(fast) - predicted)
        trained = tf_image_io.resize(tf.io.decode_jpeg(
            jpeg, channels=3, dct_method=tf_image_io.JPEG_DCT_METHOD), size).numpy()
        self.note("jpeg", "tf.data training", self.age(trained) - predicted)
        self.note("jpeg", "host pipeline",
                  self.age(host_pipeline.decode_image(jpeg, size)) - predicted)
        self.note("jpeg", "evaluate", self.age(evaluate.decode_jpegs([jpeg])[0]) - predicted)

    def print_table(self, faces: int) -> None:
        """A Markdown table: a row per file kind, a column per path."""
        columns = sorted({column for _, column in self.worst})
        kinds = sorted({kind for kind, _ in self.worst})
        print(f"largest |age difference| in years over {faces} faces; reference: "
              "tfdldl.predict --aligned on the same file ('upright': on the upright JPEG)")
        print("| file | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for kind in kinds:
            cells = ["" if (kind, column) not in self.worst
                     else f"{self.worst[kind, column]:.3f}" for column in columns]
            print(f"| {kind} | " + " | ".join(cells) + " |")
        for kind, verdict in sorted(self.refused.items()):
            print(f"| {kind} | " + " | ".join([verdict] * len(columns)) + " |")


def main(argv) -> int:
    from tfdldl import export
    from tfdldl.inference import load_predictor

    with tempfile.TemporaryDirectory() as scratch:
        path = export.reexport_saved_model(FLAGS.model, scratch, "model", 1)
        predictor = load_predictor(path)
        parity = Parity(predictor, export.load_serving(path))
        size = predictor.face_size
        chips = sorted(glob.glob(os.path.join(FLAGS.images, "*.jpg")))
        chips = chips[:: max(1, len(chips) // FLAGS.faces)][:FLAGS.faces]
        for chip in chips:
            rgb = cv2.resize(cv2.cvtColor(cv2.imread(chip), cv2.COLOR_BGR2RGB), (size, size),
                             interpolation=cv2.INTER_AREA)
            made = files_of(rgb)
            parity.files(made)
            parity.orientations(made, rgb)
            parity.training(made["jpeg"], size)
    parity.print_table(len(chips))
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
