"""Does a face's age move with its surroundings? The context benchmark.

    python benchmarks/bench_context.py --model saved_models/utkface_tinyagenet/6 \
        --data data/utkface_128 --images ../shared/datasets/utkface/images \
        [--split test] [--count 300] [--scenes 3] [--seed 0]

Takes ``count`` source photos of a TFRecord set's split (the ``source`` paths its records
keep, under ``--images``), and places each face into ``scenes`` larger pictures: the chip
resized by U(0.8, 1.25) and pasted at a random place of a canvas 2-3x its side, on one of
three backgrounds (cycled): a texture (smooth colour fields, flat shapes with edges,
sensor-like noise), non-face regions of other photos (a mosaic of the corner patches of
other chips: hair, walls, clothes), or a plain colour. A third of the scenes are grayscale;
every scene is stored as JPEG with quality U(40, 95). The full ``tfdldl.predict`` path
(detection, alignment with the model's framing, the model, flip averaging when predict
does it) runs on the originals and on the scenes; the face whose box best overlaps the
pasted chip is the one compared. Prints MAE alone, MAE in scenes, and the mean and 90th
percentile of |age in scene - age alone|, and the faces found, then the same mean split by
each factor (background, grayscale, JPEG quality, scale) to show which one moves the age.
A benchmark, not a test; its numbers come from a real model on real photos.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BACKGROUNDS = ("texture", "photo_regions", "plain")


def photo_regions(height: int, width: int, others: list, rng) -> "np.ndarray":
    """A mosaic of 48 px corner patches (no face) of other photos, resized to 64-128 px."""
    import cv2

    canvas = np.zeros((height, width, 3), np.uint8)
    tile = int(rng.integers(64, 129))
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            other = others[int(rng.integers(0, len(others)))]
            h, w = other.shape[:2]
            y = 0 if rng.random() < 0.5 else h - 48
            x = 0 if rng.random() < 0.5 else w - 48
            patch = cv2.resize(other[y:y + 48, x:x + 48], (tile, tile),
                               interpolation=cv2.INTER_LINEAR)
            canvas[top:top + tile, left:left + tile] = patch[:height - top, :width - left]
    return canvas


def make_context_scene(chip, kind: str, others: list, rng):
    """(JPEG bytes of a scene holding ``chip``, (x, y, side) of the pasted chip, factors).

    ``factors`` names the scene's draws: background, grayscale, JPEG quality band, scale band.
    """
    import cv2

    from tfdldl.bench_predict import texture_background

    side = int(round(chip.shape[0] * rng.uniform(0.8, 1.25)))
    height, width = (int(side * rng.uniform(2.0, 3.0)) for _ in range(2))
    if kind == "texture":
        canvas = texture_background(height, width, rng)
    elif kind == "photo_regions":
        canvas = photo_regions(height, width, others, rng)
    else:
        canvas = np.full((height, width, 3), rng.integers(0, 256, 3), np.uint8)
    interpolation = cv2.INTER_AREA if side < chip.shape[0] else cv2.INTER_CUBIC
    pasted = cv2.resize(chip, (side, side), interpolation=interpolation)
    y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    canvas[y:y + side, x:x + side] = pasted
    gray = rng.random() < 1 / 3
    if gray:
        canvas = np.repeat(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    quality = int(rng.integers(40, 96))
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    factors = {"background": kind, "colour": "grayscale" if gray else "colour",
               "jpeg_quality": "40-59" if quality < 60 else "60-95",
               "scale": "0.80-0.99" if side < chip.shape[0] else "1.00-1.25"}
    return encoded.tobytes(), (x, y, side), factors


def _overlap(box, placed) -> float:
    """Intersection over the detection box's area of a box (x, y, w, h) and the chip."""
    x, y, w, h = box
    px, py, side = placed
    ix = max(0.0, min(x + w, px + side) - max(x, px))
    iy = max(0.0, min(y + h, py + side) - max(y, py))
    return ix * iy / max(w * h, 1e-9)


def run(model: str, data: str, images: str, split: str, count: int, scenes: int,
        seed: int) -> dict:
    """The benchmark's numbers (see the module docstring) as a dict."""

    from tfdldl import tfrecord_reader
    from tfdldl.image_io import decode_rgb, read_rgb
    from tfdldl.inference import aligner_for, load_predictor
    from tfdldl.manifest import read_manifest
    from tfdldl.predict import STATUS_FACE, Frame, predict_frames

    manifest = read_manifest(data)
    records = [(face.source, face.label)
               for face in tfrecord_reader.read_faces(manifest.shards(split))]
    rng = np.random.default_rng(seed)
    chosen = [records[i] for i in sorted(rng.choice(len(records), min(count, len(records)),
                                                    replace=False))]
    predictor = load_predictor(model)
    aligner = aligner_for(predictor)
    chips = [read_rgb(os.path.join(images, source)) for source, _ in chosen]
    labels = np.array([label for _, label in chosen], np.float64)
    start = time.perf_counter()
    alone = [rows[0].value if rows[0].status == STATUS_FACE else np.nan
             for rows in predict_frames([Frame(s, c) for (s, _), c in zip(chosen, chips)],
                                        predictor, aligner)]
    in_scene = np.full((len(chips), scenes), np.nan)
    scene_factors = []
    for index, chip in enumerate(chips):
        frames, placements = [], []
        for variant in range(scenes):
            data_bytes, placed, factors = make_context_scene(
                chip, BACKGROUNDS[variant % len(BACKGROUNDS)], chips, rng)
            frames.append(Frame(f"{chosen[index][0]}#scene{variant}", decode_rgb(data_bytes)))
            placements.append(placed)
            scene_factors.append(factors)
        for variant, rows in enumerate(predict_frames(frames, predictor, aligner)):
            faces = [row for row in rows if row.status == STATUS_FACE]
            if faces:
                best = max(faces, key=lambda row: _overlap(
                    (row.x, row.y, row.width, row.height), placements[variant]))
                if _overlap((best.x, best.y, best.width, best.height), placements[variant]) > 0.5:
                    in_scene[index, variant] = best.value
    seconds = time.perf_counter() - start
    alone = np.array(alone, np.float64)
    both = np.isfinite(alone)[:, None] & np.isfinite(in_scene)
    moved = np.abs(in_scene - alone[:, None])[both]
    return {
        "model": os.path.abspath(model), "data": os.path.abspath(data), "split": split,
        "photos": len(chips), "scenes_per_photo": scenes,
        "found_alone": int(np.isfinite(alone).sum()),
        "found_in_scenes": int(np.isfinite(in_scene).sum()),
        "mae_alone": float(np.nanmean(np.abs(alone - labels))),
        "mae_in_scenes": float(np.nanmean(np.abs(in_scene - labels[:, None]))),
        "mean_abs_difference": float(moved.mean()) if moved.size else None,
        "p90_abs_difference": float(np.percentile(moved, 90)) if moved.size else None,
        "by_factor": by_factor(np.abs(in_scene - alone[:, None]).ravel(), scene_factors),
        "seconds": round(seconds, 1),
    }


def by_factor(moved, scene_factors: list) -> dict:
    """{factor: {level: [scenes compared, mean |age in scene - age alone|]}}.

    ``moved`` holds one |difference| per scene in ``scene_factors``' order (NaN where the
    face was missed alone or in the scene; those are left out).
    """

    table = {}
    for factor in scene_factors[0] if scene_factors else ():
        for level in sorted({factors[factor] for factors in scene_factors}):
            chosen = np.array([factors[factor] == level for factors in scene_factors])
            values = moved[chosen & np.isfinite(moved)]
            table.setdefault(factor, {})[level] = [
                int(values.size), float(values.mean()) if values.size else None]
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="TFRecord folder whose split is used")
    parser.add_argument("--images", required=True, help="root of the records' source paths")
    parser.add_argument("--split", default="test")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    result = run(args.model, args.data, args.images, args.split, args.count, args.scenes,
                 args.seed)
    print(f"{result['photos']} {result['split']} photos, {result['scenes_per_photo']} scenes "
          f"each; faces found alone {result['found_alone']}, in scenes "
          f"{result['found_in_scenes']}/{result['photos'] * result['scenes_per_photo']}")
    print(f"MAE alone {result['mae_alone']:.2f}, MAE in scenes {result['mae_in_scenes']:.2f}; "
          f"|age in scene - age alone|: mean {result['mean_abs_difference']:.2f}, "
          f"p90 {result['p90_abs_difference']:.2f} years ({result['seconds']:.0f} s)")
    for factor, levels in result["by_factor"].items():
        print(f"  by {factor}: " + ", ".join(
            f"{level} {mean:.2f} (n={count})" for level, (count, mean) in levels.items()
            if mean is not None))
    if args.json:
        from tfdldl.jsonio import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
