"""Faces/s of the Beam build (local FnApiRunner) against the local builder, same photos.

    python benchmarks/bench_beam_build.py [--images DIR] [--limit 2000] [--workers 2]

Builds the same random UTKFace subset (configs/data/utkface.yaml, ``limit`` photos) once
with each runner into a temporary folder, and prints for each: seconds end to end, the
alignment stage's seconds and faces/s, and whether the two manifests agree on the counts
per split, the skips and the duplicate groups.
"""

import argparse
import os
import tempfile
import time

from data_prep import build
from data_prep.config import load_data_config

DEFAULT_IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              os.pardir, "shared", "datasets", "utkface", "images")


def main() -> None:
    """Parse the flags, build both ways, print one line per runner and the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=os.path.normpath(DEFAULT_IMAGES))
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    manifests = {}
    with tempfile.TemporaryDirectory() as folder:
        for runner in ("local", "beam"):
            config = load_data_config("configs/data/utkface.yaml", [
                f"adapter.options.root={args.images}", f"limit={args.limit}",
                f"workers={args.workers}", f"runner.name={runner}",
                f"output.dir={os.path.join(folder, runner)}"])
            start = time.monotonic()
            manifest = manifests[runner] = build.build(config, log=lambda line: None)
            seconds = time.monotonic() - start
            aligned = manifest["this_run"]["alignment_seconds"]
            faces = manifest["records"]["written"]
            print(f"{runner:5s}: {seconds:6.1f} s end to end, alignment {aligned:6.1f} s = "
                  f"{faces / aligned:5.1f} faces/s ({faces} faces, {args.workers} workers)",
                  flush=True)
    local, beam = manifests["local"], manifests["beam"]
    same = (local["splits"] == beam["splits"] and local["skips"]["by_reason"]
            == beam["skips"]["by_reason"] and local["duplicates"]["group_paths"]
            == beam["duplicates"]["group_paths"] and local["build"] == beam["build"])
    print(f"same splits, counts, skips, duplicate groups and plan: {same}")


if __name__ == "__main__":
    main()
