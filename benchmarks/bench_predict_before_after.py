"""Predict photos/s before and after the compiled detector, and the peer's, in one interleaved run.

    python benchmarks/bench_predict_before_after.py --photos runs/predict_photos/scenes \
        --model saved_models/utkface_tinyagenet/6 [--before 0656a3d] [--out runs/before_after.json]

"before" is FaceAligner as it was at git revision ``--before`` (the mtcnn package's eager
stages, 20 px minimum face, 1024 px detection cap: tfdldl.predict's old defaults), loaded
from ``git show``; "after" is the current one with tfdldl.predict's defaults. Both run
through the current predict engine (same read, alignment and model code), chunk by chunk
with the peer package (tfdldl.bench_predict.bench_predict), so the time split and the photos/s of
all three come from the same minutes of the same machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The last revision whose FaceAligner ran the mtcnn package's eager stages.
BEFORE = "0656a3d"


def load_old_aligner_class(revision: str):
    """tfdldl/face_align.py at ``revision`` as a module of its own; returns its FaceAligner."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "show", f"{revision}:tfdldl/face_align.py"], cwd=root,
                            check=True, capture_output=True, text=True).stdout
    folder = tempfile.mkdtemp(prefix="face_align_before_")
    path = os.path.join(folder, "face_align_before.py")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("face_align_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.FaceAligner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True, help="folder of photos")
    parser.add_argument("--model", required=True, help="SavedModel folder or .keras file")
    parser.add_argument("--before", default=BEFORE, help="git revision of the old detector")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--out", default="", help="JSON report file")
    args = parser.parse_args()

    from tfdldl.bench_predict import bench_predict, format_predict_report
    from tfdldl.inference import aligner_for, load_predictor
    from tfdldl.jsonio import write_json

    predictor = load_predictor(args.model)
    old = load_old_aligner_class(args.before)(output_size=predictor.face_size,
                                              min_face_size=20, max_side=1024)
    aligners = {"before": old, "after": aligner_for(predictor)}
    report = bench_predict(args.photos, args.model, args.batch_size, cold_start=False,
                           aligners=aligners)
    report["before_revision"] = args.before
    print(format_predict_report(report))
    if args.out:
        write_json(args.out, report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
