"""Write benchmark photo folders from face chips: the chips themselves and the same faces in scenes.

    python benchmarks/make_scenes.py --faces ../shared/datasets/utkface/images \
        --out runs/predict_photos --count 200 [--every 97]

Writes ``OUT/chips/`` (copies of ``count`` chips, every ``every``-th file of the sorted
folder) and ``OUT/scenes/`` (each of those faces placed into a 450-1200 px scene by
:func:`tfdldl.bench_predict.make_scene`, JPEG quality 92) plus ``OUT/scenes/placements.json``
(file -> [x, y, side] of the pasted chip). Then, for example:

    python -m tfdldl.bench --predict_photos OUT/scenes --model saved_models/utkface_tinyagenet/6
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", required=True, help="folder of face chips (*.jpg)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=int, default=200, help="faces to use")
    parser.add_argument("--every", type=int, default=97, help="take every Nth chip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import cv2
    import numpy as np

    from tfdldl.bench_predict import make_scene
    from tfdldl.image_io import read_rgb

    files = sorted(glob.glob(os.path.join(args.faces, "*.jpg")))[::args.every][:args.count]
    if not files:
        print(f"error: no *.jpg in {args.faces}", file=sys.stderr)
        return 2
    chips_dir, scenes_dir = os.path.join(args.out, "chips"), os.path.join(args.out, "scenes")
    os.makedirs(chips_dir, exist_ok=True)
    os.makedirs(scenes_dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    placements = {}
    for path in files:
        name = os.path.basename(path)
        shutil.copyfile(path, os.path.join(chips_dir, name))
        scene, placement = make_scene(read_rgb(path), rng)
        cv2.imwrite(os.path.join(scenes_dir, name), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        placements[name] = list(placement)
    with open(os.path.join(scenes_dir, "placements.json"), "w", encoding="utf-8") as handle:
        json.dump(placements, handle, indent=1)
    print(f"wrote {len(files)} chips to {chips_dir} and {len(files)} scenes to {scenes_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
