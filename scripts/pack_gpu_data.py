"""Pack splits of a TFRecord build into one small archive that can travel to the GPU machine.

    python scripts/pack_gpu_data.py --data data/utkface_128 --out build/gpu/utkface_128.tar.xz \
        --jpeg_quality 90 [--splits train,val] [--image_size 128] [--max_mib 58]

The device tool carries at most 64 MiB per command (repository included), so the
archive holds only the splits that training needs (the test split stays here and is
evaluated with TensorFlow), optionally re-encodes the faces at a lower JPEG quality
and/or size, and is compressed (xz squeezes the label distributions and the JPEGs'
standard Huffman tables). Its manifest lists only the packed splits and records what
was changed under "packed_from". Unpack with ``python -m tarfile -e ARCHIVE DIR``.

Exit status 2 (and no archive) when the result would exceed ``--max_mib``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import tarfile
import tempfile

import cv2
import numpy as np
from absl import app, flags

from data_prep.tfrecord_writer import write_shard
from tfdldl import example_schema, tfrecord_reader
from tfdldl.manifest import read_manifest, write_manifest

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Source TFRecord folder (with manifest.json).", required=True)
flags.DEFINE_string("out", None, "Archive to write (.tar.xz or .tar.gz).", required=True)
flags.DEFINE_list("splits", ["train", "val"], "Splits to pack.")
flags.DEFINE_integer("jpeg_quality", None, "Re-encode the faces at this JPEG quality "
                     "(default: keep the stored bytes).")
flags.DEFINE_integer("image_size", None, "Re-encode the faces at this side in pixels "
                     "(area-averaged when smaller; default: the stored size).")
flags.DEFINE_integer("records_per_shard", 2000, "Records per packed shard.")
flags.DEFINE_float("max_mib", 58.0, "Refuse an archive larger than this (MiB): 64 MiB per "
                   "device command minus the repository and the wheels.")

# Manifest keys worth carrying (the per-record lists and histograms stay here).
KEPT_KEYS = ("schema_version", "dataset", "task", "label_space", "sigma", "alignment")


def reencode(jpeg: bytes, quality: int | None, size: int | None) -> bytes:
    """The face re-encoded at ``quality`` and ``size`` (either None keeps that property)."""
    if quality is None and size is None:
        return jpeg
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if size is not None and image.shape[0] != size:
        interpolation = cv2.INTER_AREA if size < image.shape[0] else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interpolation)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality or 95)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a face as JPEG")
    return encoded.tobytes()


def pack(data: str, out: str, splits: list[str], quality: int | None, size: int | None,
         records_per_shard: int) -> dict:
    """Write the archive ``out``; returns the packed manifest dict."""
    manifest = read_manifest(data)
    folder_name = os.path.basename(out).split(".tar")[0]
    scratch = tempfile.mkdtemp(prefix="pack-")
    try:
        root = os.path.join(scratch, folder_name)
        os.makedirs(root)
        packed_splits = {}
        for split in splits:
            faces = list(tfrecord_reader.read_faces(manifest.shards(split)))
            count = math.ceil(len(faces) / records_per_shard)
            names = [example_schema.shard_name(split, i, count) for i in range(count)]
            for i, name in enumerate(names):
                # Every field kept (group, coverage, ...); only the pixels are re-encoded.
                examples = [dataclasses.replace(face, jpeg=reencode(face.jpeg, quality, size),
                                                image_size=size or face.image_size)
                            for face in faces[i * records_per_shard:(i + 1) * records_per_shard]]
                write_shard(os.path.join(root, name), examples)
            packed_splits[split] = {"count": len(faces), "shards": names}
            print(f"{split}: {len(faces)} faces in {count} shard(s)", flush=True)
        packed = {key: manifest.raw[key] for key in KEPT_KEYS if key in manifest.raw}
        packed.update(image_size=size or manifest.image_size, splits=packed_splits,
                      packed_from={"root": manifest.root, "jpeg_quality": quality,
                                   "image_size": size})
        write_manifest(root, packed)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        mode = "w:xz" if out.endswith(".xz") else "w:gz"
        with tarfile.open(out + ".partial", mode) as archive:
            archive.add(root, arcname=folder_name)
        os.replace(out + ".partial", out)
        return packed
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv) -> int:
    del argv
    pack(FLAGS.data, FLAGS.out, FLAGS.splits, FLAGS.jpeg_quality, FLAGS.image_size,
         FLAGS.records_per_shard)
    mib = os.path.getsize(FLAGS.out) / 2**20
    print(f"wrote {FLAGS.out}: {mib:.1f} MiB")
    if mib > FLAGS.max_mib:
        os.remove(FLAGS.out)
        print(f"error: {mib:.1f} MiB is over --max_mib={FLAGS.max_mib}; lower --jpeg_quality "
              "or --image_size (removed the archive)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
