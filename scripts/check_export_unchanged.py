"""Check that this tree's export graph answers exactly as a shipped SavedModel does.

    python scripts/check_export_unchanged.py [--model saved_models/utkface_tinyagenet/6] \
        [--photos ../shared/datasets/utkface/images] [--count 20]

The shipped SavedModel is re-exported with this tree's code (its weights, label space and
config kept: tfdldl.export.reexport_saved_model) into a temporary folder; both are run
through every signature on the first ``count`` UTKFace photos (sorted by name), and every
output is compared element by element. Prints the largest difference per signature and
output; exits 1 unless all are identical (NaN equals NaN).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compare(model: str, photos: str, count: int) -> bool:
    """Run both SavedModels on ``count`` photos; True when every output is identical."""
    from tfdldl import export
    from tfdldl.image_io import decode_rgb

    names = sorted(name for name in os.listdir(photos) if name.endswith(".jpg"))[:count]
    encoded = [open(os.path.join(photos, name), "rb").read() for name in names]
    pixels = np.stack([decode_rgb(data, name) for data, name in zip(encoded, names)])
    shipped = export.load_serving(model)
    with tempfile.TemporaryDirectory() as scratch:
        fresh = export.load_serving(export.reexport_saved_model(model, scratch, "fresh", 1))
        runs = {"serving_default": lambda served: served(encoded),
                "serving_flip_averaged": lambda served: served.predict_flip_averaged(encoded),
                "predict_images": lambda served: served.predict_images(pixels.astype(np.float32))}
        same = True
        for signature, call in runs.items():
            before, after = call(shipped), call(fresh)
            if sorted(before) != sorted(after):
                print(f"{signature}: outputs {sorted(before)} became {sorted(after)}")
                same = False
                continue
            for key in sorted(before):
                a, b = np.asarray(before[key]), np.asarray(after[key])
                equal = a.shape == b.shape and (np.array_equal(a, b) if a.dtype.kind in "OSU"
                                                else np.array_equal(a, b, equal_nan=True))
                spread = (float(np.max(np.abs(a.astype(np.float64) - b)))
                          if a.dtype.kind == "f" and a.shape == b.shape else 0.0)
                print(f"{signature:22s} {key:13s} shape {a.shape} identical={equal} "
                      f"max|diff|={spread:.3g}")
                same = same and equal
    print(f"{len(names)} photos from {photos}; model {model}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(ROOT, "saved_models",
                                                        "utkface_tinyagenet", "3"))
    parser.add_argument("--photos", default=os.path.join(ROOT, "..", "shared", "datasets",
                                                         "utkface", "images"))
    parser.add_argument("--count", type=int, default=20)
    arguments = parser.parse_args()
    identical = compare(arguments.model, arguments.photos, arguments.count)
    print("IDENTICAL" if identical else "DIFFERENT")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
