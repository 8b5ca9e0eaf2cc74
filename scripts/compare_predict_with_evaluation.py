"""Check that tfdldl.predict on raw photos agrees with the evaluation path on the same faces.

The evaluation path feeds the aligned faces stored in the TFRecords to the SavedModel's
``serving_default``; ``tfdldl.predict`` detects and aligns the original photos itself.
Both use tfdldl.face_align at the size the model was trained from, and predict detects
with the data build's minimum face size; they differ in the stored JPEG re-encoding (and
the JPEG decoder). Both predict each face once (predict with --no_flip, as
``serving_default`` does). Prints both ages per face, the mean and the largest difference (years).

  python scripts/compare_predict_with_evaluation.py --model saved_models/utkface_tinyagenet/6 \
      --data data/utkface_128 --images ../shared/datasets/utkface/images --count 20
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from tfdldl import tfrecord_reader
from tfdldl.export import load_serving
from tfdldl.inference import TRAINING_FACES_KEY
from tfdldl.manifest import read_manifest


def main() -> int:
    """Run both paths on the first ``--count`` faces of ``--split`` and print the differences."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--images", required=True, help="Folder the manifest's sources are in.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()

    manifest = read_manifest(args.data)
    faces = []
    for face in tfrecord_reader.read_faces(manifest.shards(args.split)):
        faces.append(face)
        if len(faces) == args.count:
            break
    serving = load_serving(args.model)
    served = serving([face.jpeg for face in faces])["value"]
    alignment = serving.config.get(TRAINING_FACES_KEY, {}).get("alignment", {})
    min_face_size = str(alignment.get("min_face_size", 20))
    photos = [os.path.join(args.images, os.path.basename(face.source)) for face in faces]
    output = subprocess.run(
        [sys.executable, "-m", "tfdldl.predict", *photos, "--model", args.model,
         "--format", "jsonl", "--min_face_size", min_face_size, "--no_flip"],
        check=True, capture_output=True, text=True).stdout
    predicted = {}
    for line in output.splitlines():
        row = json.loads(line)
        if row.get("face") == 0:
            predicted[row["file"]] = row["value"]
    differences = []
    print(f"{'photo':48s} {'label':>6s} {'evaluate':>9s} {'predict':>8s}")
    for face, photo, value in zip(faces, photos, served):
        mine = predicted.get(photo, float("nan"))
        differences.append(abs(mine - value))
        print(f"{os.path.basename(photo):48s} {face.label:6.0f} {value:9.2f} {mine:8.2f}")
    largest = float(np.nanmax(differences))
    mean = float(np.nanmean(differences))
    print(f"{len(faces)} faces: mean |difference| {mean:.3f} years, largest {largest:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
