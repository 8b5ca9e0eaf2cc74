"""Synthetic labelled images whose appearance encodes the label.

Used by the README's embedded default (no download, no data of ours) and by tests that
need a learnable dataset in seconds. A label y maps to a face-like pattern: an ellipse
whose brightness and ring count grow with y, on noisy background; a model must read the
pattern to get the label, so a falling MAE means real learning.
"""

from __future__ import annotations

import csv
import os
from typing import Mapping

import cv2
import numpy as np

from tfdldl import example_schema
from tfdldl.label_space import LabelSpace
from tfdldl.manifest import legacy_task, write_manifest

SYNTHETIC_SIGMA = 2.0
# Group codes of the synthetic records (for evaluation slices), cycled through record order.
SYNTHETIC_GROUPS = ("light", "mid", "dark")


def render(label: float, label_space: LabelSpace, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one synthetic image for ``label``.

    Args:
      label: y in label units, inside ``label_space``.
      label_space: gives the [min, max] range mapped to brightness.
      size: side of the square image, pixels.
      rng: the random source (noise, jitter).
    Returns:
      uint8 [size, size, 3] RGB.
    """
    fraction = (label - label_space.minimum) / (label_space.maximum - label_space.minimum)
    image = rng.integers(0, 40, size=(size, size, 3), dtype=np.uint8)
    centre = (size // 2 + int(rng.integers(-2, 3)), size // 2 + int(rng.integers(-2, 3)))
    axes = (int(size * 0.30), int(size * 0.38))
    brightness = int(60 + 190 * fraction)
    cv2.ellipse(image, centre, axes, 0, 0, 360, (brightness, brightness, brightness), -1)
    rings = 1 + int(round(4 * fraction))
    for ring in range(rings):
        radius = max(1, int(axes[0] * (ring + 1) / (rings + 1)))
        cv2.circle(image, centre, radius, (255 - brightness, 80, 80), 1)
    return image


def sample_labels(label_space: LabelSpace, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` labels on the grid, uniform over the space; float32 [count]."""
    index = rng.integers(0, label_space.num_classes, size=count)
    return label_space.grid[index]


def write_image_folder(out_dir: str, count: int, label_space: LabelSpace, size: int = 128,
                       seed: int = 0) -> str:
    """Write ``count`` synthetic JPEGs and a generic ``labels.csv`` (path,label) beside them.

    Returns:
      The CSV path, for data_prep's ``generic_csv`` adapter.
    """
    rng = np.random.default_rng(seed)
    images_dir = os.path.join(out_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, "labels.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for i, label in enumerate(sample_labels(label_space, count, rng)):
            name = f"synthetic_{i:05d}.jpg"
            image = render(float(label), label_space, size, rng)
            cv2.imwrite(os.path.join(images_dir, name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            writer.writerow([f"images/{name}", f"{label:g}"])
    return csv_path


def write_tfrecord_set(root: str, label_space: LabelSpace, counts: Mapping[str, int],
                       image_size: int = 64, shards_per_split: int = 2, seed: int = 0) -> str:
    """Write a complete TFRecord folder (shards + manifest) of synthetic faces.

    Args:
      root: output folder (created).
      label_space: the grid of the stored distributions.
      counts: split name -> number of records, e.g. {"train": 64, "val": 16, "test": 16}.
      image_size: side of the stored images, pixels.
      shards_per_split: shards written for each split.
      seed: makes the set reproducible.
    Returns:
      ``root``. Its manifest's task is the label space's name when that names a task
      (tfdldl.manifest.legacy_task): AGE data are "age", SCUT_FBP5500 "attractiveness".
    """
    from data_prep.tfrecord_writer import write_shard

    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    splits = {}
    for split, count in counts.items():
        labels = sample_labels(label_space, count, rng)
        distributions = label_space.gaussian(labels, SYNTHETIC_SIGMA)
        examples = []
        for i, label in enumerate(labels):
            image = render(float(label), label_space, image_size, rng)
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError("OpenCV failed to encode a synthetic JPEG")
            examples.append(example_schema.FaceRecord(
                jpeg=jpeg.tobytes(), image_size=image_size, label=float(label),
                sigma=SYNTHETIC_SIGMA, distribution=distributions[i],
                subject=f"s{split}{i}", gender=i % 2, source=f"{split}/{i:05d}.jpg",
                group=i % len(SYNTHETIC_GROUPS), coverage=1.0,
            ))
        names = [example_schema.shard_name(split, s, shards_per_split)
                 for s in range(shards_per_split)]
        for s, name in enumerate(names):
            write_shard(os.path.join(root, name), examples[s::shards_per_split])
        splits[split] = {"count": count, "shards": names}
    write_manifest(root, {
        "schema_version": example_schema.SCHEMA_VERSION,
        "dataset": "synthetic",
        "task": legacy_task(label_space),
        "label_space": label_space.to_dict(),
        "sigma": {"policy": "constant", "value": SYNTHETIC_SIGMA},
        "image_size": image_size,
        "splits": splits,
        "group": {"name": "tone", "labels": list(SYNTHETIC_GROUPS)},
    })
    return root


def main(argv) -> None:
    """CLI: ``python -m data_prep.synthetic --out DIR --count N --size S``."""
    from absl import flags

    del argv
    values = flags.FLAGS
    label_space = LabelSpace(values.minimum, values.maximum, values.step, name="age")
    csv_path = write_image_folder(values.out, values.count, label_space, values.size, values.seed)
    print(f"wrote {values.count} synthetic images and {csv_path}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("out", "demo_output/raw", "Output folder (images/ and labels.csv).")
    flags.DEFINE_integer("count", 600, "Number of images.")
    flags.DEFINE_integer("size", 96, "Image side, pixels.")
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_float("minimum", 0.0, "Smallest label.")
    flags.DEFINE_float("maximum", 100.0, "Largest label.")
    flags.DEFINE_float("step", 1.0, "Label grid step.")
    app.run(main)
