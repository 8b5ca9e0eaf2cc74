"""Training images/s vs input-pipeline-only images/s for an experiment (default: small_cpu).

    python benchmarks/bench_train.py [--config configs/small_cpu.yaml] [--data DIR]
        [--steps 30]

Without --data (or when the config's TFRecord folder is absent) it writes synthetic
TFRecords at 200 px (UTKFace's crop size) to a temporary folder, so it runs anywhere.
The pipeline is measured exactly as training uses it (parse, decode, resize, the
config's augmentation, batch, prefetch). It must deliver at least 3x what training
consumes, or training is input-bound. A benchmark, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rate(iterator, steps: int, batch: int, step=lambda item: None) -> float:
    """Images/s over ``steps`` batches after one warm-up batch."""
    step(next(iterator))
    start = time.perf_counter()
    for _ in range(steps):
        step(next(iterator))
    return steps * batch / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/small_cpu.yaml")
    parser.add_argument("--data", default=None, help="TFRecord folder (default: the config's)")
    parser.add_argument("--steps", type=int, default=30, help="Batches timed per measurement.")
    args = parser.parse_args()

    import tensorflow as tf

    from tfdldl import input_pipeline, model_setup
    from tfdldl.experiment import load_experiment
    from tfdldl.manifest import read_manifest

    experiment = load_experiment(args.config)
    data = args.data or experiment.data.tfrecords
    scratch = None
    if not os.path.exists(os.path.join(data, "manifest.json")):
        from data_prep.synthetic import write_tfrecord_set
        from tfdldl.label_space import AGE

        scratch = tempfile.TemporaryDirectory()
        data = write_tfrecord_set(scratch.name, AGE, {"train": 1024}, image_size=200,
                                  shards_per_split=4)
        print(f"{experiment.data.tfrecords} not built: using 1024 synthetic 200 px faces")
    manifest = read_manifest(data)
    batch, size = experiment.train.batch_size, experiment.model.input_size
    model = model_setup.build_compiled_model(experiment, manifest, steps_per_epoch=args.steps)

    def stream():
        return iter(input_pipeline.make_dataset(
            manifest, experiment.data.train_split, batch, list(model.output_names),
            training=True, augment_cfg=experiment.augment, image_size=size,
            seed=experiment.seed, steps_per_epoch=args.steps + 1, epochs=3))

    pipeline = _rate(stream(), args.steps, batch)
    training = _rate(stream(), args.steps, batch,
                     step=lambda item: model.train_on_batch(item[0], item[1]))
    print(f"{experiment.name}: {experiment.model.arch} at {size} px, batch {batch}, "
          f"{os.cpu_count()} CPUs, TF {tf.__version__}")
    print(f"input pipeline alone: {pipeline:8.1f} images/s")
    print(f"training (incl. input): {training:8.1f} images/s")
    print(f"ratio pipeline / training: {pipeline / training:.1f}x "
          f"({'OK' if pipeline >= 3 * training else 'INPUT-BOUND'}: needs >= 3x)")
    if scratch:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
