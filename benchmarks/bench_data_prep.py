"""Throughput of data_prep.build: faces/s, detection rate, wall time and output size.

    python benchmarks/bench_data_prep.py --config configs/data/utkface.yaml --limit 500

Builds into a fresh temporary folder (or --out) so nothing is resumed, then prints one
line per figure. ``--limit N`` builds a seeded random subset of N records.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from data_prep.build import BuildError, build  # noqa: E402
from data_prep.config import load_data_config  # noqa: E402
from tfdldl.config import ConfigError  # noqa: E402

flags.DEFINE_string("config", None, "Data config YAML.")
flags.DEFINE_integer("limit", 0, "Build only this many records (0: all).")
flags.DEFINE_string("out", None, "Output folder (default: a temporary one, deleted after).")
flags.DEFINE_multi_string("set", [], "Config overrides, e.g. --set workers=1.")
flags.mark_flag_as_required("config")
FLAGS = flags.FLAGS


def folder_bytes(path: str) -> int:
    """Total size of the files under ``path``, bytes."""
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def main(argv) -> None:
    del argv
    out = FLAGS.out or tempfile.mkdtemp(prefix="bench_data_prep_")
    overrides = list(FLAGS.set) + [f"limit={FLAGS.limit}", f"output.dir={out}"]
    try:
        config = load_data_config(FLAGS.config, overrides)
        start = time.monotonic()
        manifest = build(config, log=lambda line: None)
        wall = time.monotonic() - start
    except (ConfigError, BuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    alignment, run = manifest["alignment"], manifest["this_run"]
    written = manifest["records"]["written"]
    size = folder_bytes(out)
    print(f"config:          {FLAGS.config} (workers={config.workers}, "
          f"min_face_size={config.alignment.min_face_size}, "
          f"output_size={config.alignment.output_size})")
    print(f"images:          {run['images_aligned']} aligned, {written} written")
    print(f"faces/s:         {written / wall:.1f} end to end; "
          f"{run['images_aligned'] / max(run['alignment_seconds'], 1e-9):.1f} in the alignment phase")
    rate = alignment["detection_rate"]
    print(f"detection rate:  {100 * rate:.2f}% ({alignment['detected']}/{alignment['attempted']})"
          if rate is not None else "detection rate:  n/a")
    print(f"wall time:       {wall:.1f} s")
    print(f"output size:     {size / 2 ** 20:.1f} MiB ({size / max(written, 1) / 1024:.1f} KiB/face)")
    if not FLAGS.out:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
