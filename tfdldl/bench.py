"""Speed and size benchmark: one command, a table on stdout and a JSON file.

    python -m tfdldl.bench --out runs/bench.json --sizes 224,112 [--config configs/x.yaml] [--quick]

For TinyAgeNet and ThinAgeNet at each size:
  * inference latency at batch 1 and batch 32 (median and minimum of timed runs after a
    warm-up, ``model.predict_on_batch`` on random 0..255 images: the compiled predict function of
    the active Keras backend, including the copy of the outputs back to the host);
  * throughput, images/s = 32 / batch-32 latency;
  * parameters, and size on disk of the ``.keras`` file and of the SavedModel
    (``tfdldl.export``; TensorFlow backend only);
  * peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of a fresh process that
    measured only that row (peak resident set of the whole process, framework included;
    the baseline after importing the framework is reported beside it), and the
    accelerator's own peak allocation when there is one;
  * training images/s: ``train_on_batch`` steps of batch 32 with the DLDL-v2 loss and
    Adam on random images (after one warm-up step).
Also data_prep's face detection + alignment rate (``FaceAligner.detect_and_align_batch``)
on real UTKFace photos when ``../shared`` is beside the project, else on synthetic
noise pictures (which contain no face: a lower bound on the work per picture).

Every row runs in its own spawned process so memory figures do not accumulate, and a
failing row (e.g. no TensorFlow on a JAX-only GPU machine) is reported, not fatal.

With ``--predict_photos DIR``, end-to-end prediction speed on a folder of photos against
the peer package instead (:mod:`tfdldl.bench_predict`).
"""

from __future__ import annotations

import concurrent.futures
import glob
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

ARCHITECTURES = ("tiny", "thin")
PAPER_MS_PER_32 = {"tiny": 24.26, "thin": 51.05}  # one NVIDIA M40, the paper's Table
UTKFACE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                       "shared", "datasets", "utkface", "images")


def _max_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _folder_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names) / 1e6


def _timed(function: Callable[[], Any], repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls, milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(1000.0 * (time.perf_counter() - start))
    return times


def accelerator_peak_mb() -> float | None:
    """Peak memory allocated on the first accelerator by the active backend, MiB; None on CPU."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if not tf.config.list_logical_devices("GPU"):
                return None
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "cpu":
                return None
            return device.memory_stats()["peak_bytes_in_use"] / 2 ** 20
        if backend == "torch":
            import torch

            return torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
    except (KeyError, RuntimeError, ValueError, AttributeError):
        return None
    return None


def bench_model(arch: str, size: int, quick: bool) -> dict[str, Any]:
    """Measure one architecture at one input size (runs in its own process).

    Returns:
      A row: arch, size, params, keras_mb, savedmodel_mb, latency_b1_ms,
      latency_b32_ms, images_per_s, train_images_per_s, peak_rss_mb,
      baseline_rss_mb, accelerator_peak_mb, and the raw timings.
    """
    import keras
    import numpy as np

    from tfdldl import heads, models
    from tfdldl.label_space import AGE

    baseline = _max_rss_mb()
    rng = np.random.default_rng(0)
    model = models.build_model(arch, AGE, input_size=size)
    row: dict[str, Any] = {"arch": arch, "size": size, "params": int(model.count_params()),
                           "backend": keras.backend.backend()}
    with tempfile.TemporaryDirectory() as scratch:
        keras_path = os.path.join(scratch, "model.keras")
        model.save(keras_path)
        row["keras_mb"] = os.path.getsize(keras_path) / 1e6
        row["savedmodel_mb"] = None
        if row["backend"] == "tensorflow":
            from tfdldl import export

            row["savedmodel_mb"] = _folder_mb(export.export_saved_model(
                model, scratch, f"{arch}{size}", 1))

    repeats_1, repeats_32 = (5, 3) if quick else (30, 10)
    one = rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    many = rng.uniform(0, 255, (32, size, size, 3)).astype(np.float32)
    model.predict_on_batch(one)  # warm-up: traces/compiles each batch shape once
    model.predict_on_batch(many)
    times_1 = _timed(lambda: model.predict_on_batch(one), repeats_1)
    times_32 = _timed(lambda: model.predict_on_batch(many), repeats_32)
    row["latency_b1_ms"] = statistics.median(times_1)
    row["latency_b32_ms"] = statistics.median(times_32)
    # The fastest run is the least disturbed by other processes on a shared machine.
    row["latency_b1_min_ms"] = min(times_1)
    row["latency_b32_min_ms"] = min(times_32)
    row["images_per_s"] = 32000.0 / row["latency_b32_ms"]
    row["timings_ms"] = {"batch1": times_1, "batch32": times_32}

    loss, weights = heads.build_loss("dldl_v2", AGE)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, loss_weights=weights)
    labels = rng.uniform(AGE.minimum, AGE.maximum, 32).astype(np.float32)
    targets = {heads.DISTRIBUTION: AGE.gaussian(labels, 2.0), heads.VALUE: labels}
    model.train_on_batch(many, targets)  # warm-up
    steps = 2 if quick else 5
    train_ms = _timed(lambda: model.train_on_batch(many, targets), steps)
    row["train_images_per_s"] = 32000.0 / statistics.median(train_ms)
    row["timings_ms"]["train_step_b32"] = train_ms

    row["peak_rss_mb"] = _max_rss_mb()
    row["baseline_rss_mb"] = baseline
    row["accelerator_peak_mb"] = accelerator_peak_mb()
    return row


def bench_alignment(count: int) -> dict[str, Any]:
    """Faces/s of FaceAligner(224) on ``count`` UTKFace photos, or synthetic ones without ../shared."""
    import numpy as np

    from tfdldl.face_align import FaceAligner
    from tfdldl.image_io import read_rgb

    files = sorted(glob.glob(os.path.join(UTKFACE, "*.jpg")))[::97][:count]
    if files:
        images = [read_rgb(path) for path in files]
        source = f"{len(images)} UTKFace photos (200x200) from ../shared"
    else:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (200, 200, 3), dtype=np.uint8) for _ in range(count)]
        source = f"{count} synthetic 200x200 noise pictures (no ../shared; no faces in them)"
    aligner = FaceAligner(output_size=224)
    aligner.detect_and_align_batch(images[:2])  # warm-up: loads MTCNN, traces its nets
    start = time.perf_counter()
    found = aligner.detect_and_align_batch(images)
    seconds = time.perf_counter() - start
    return {"source": source, "pictures": len(images),
            "faces_found": sum(1 for faces in found if faces),
            "pictures_per_s": len(images) / seconds, "seconds": seconds,
            "batched": "same-shaped pictures detected together (detect_and_align_batch)",
            "peak_rss_mb": _max_rss_mb()}


def _guarded(function: Callable, *args) -> dict[str, Any]:
    """Run ``function(*args)`` and turn an exception into {"error": ...} (row stays visible)."""
    try:
        return function(*args)
    except Exception as error:  # a benchmark row must not abort the others
        return {"error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(limit=3)}


def _in_fresh_process(function: Callable, *args) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_guarded, function, *args).result()


def machine() -> dict[str, Any]:
    """Where the numbers were measured: CPU, cores, load, framework versions, accelerators."""
    import keras

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_average_1_5_15": os.getloadavg(), "keras": keras.__version__,
            "backend": keras.backend.backend()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle
                     if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["tf_gpus"] = [device.name for device in tf.config.list_physical_devices("GPU")]
    except ImportError:
        info["tensorflow"] = None
    return info


def _cell(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The human table of the model rows."""
    header = (f"{'model':6} {'size':>4} {'params':>9} {'.keras MB':>9} {'SavedModel MB':>13} "
              f"{'b1 ms':>8} {'b32 ms':>9} {'b32 min':>9} {'img/s':>8} {'train img/s':>11} "
              f"{'peak RSS MB':>11} {'accel MB':>8}")
    lines = [header, "-" * len(header)]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['arch']:6} {row['size']:>4} error: {row['error']}")
            continue
        lines.append(
            f"{row['arch']:6} {row['size']:>4} {row['params']:>9,} {_cell(row['keras_mb'], 2):>9} "
            f"{_cell(row['savedmodel_mb'], 2):>13} {_cell(row['latency_b1_ms'], 2):>8} "
            f"{_cell(row['latency_b32_ms'], 1):>9} {_cell(row['latency_b32_min_ms'], 1):>9} "
            f"{_cell(row['images_per_s']):>8} "
            f"{_cell(row['train_images_per_s']):>11} {_cell(row['peak_rss_mb'], 0):>11} "
            f"{_cell(row['accelerator_peak_mb'], 0):>8}")
    return "\n".join(lines)


def run_benchmark(sizes: list[int], quick: bool, faces: int) -> dict[str, Any]:
    """Every row, each in a fresh process; returns the JSON-ready report."""
    rows = []
    for arch in ARCHITECTURES:
        for size in sizes:
            load_before = os.getloadavg()
            row = _in_fresh_process(bench_model, arch, size, quick)
            rows.append({"arch": arch, "size": size, **row,
                         "load_average_before": load_before,
                         "load_average_after": os.getloadavg()})
            print(f"  measured {arch} {size}px", file=sys.stderr, flush=True)
    alignment = _in_fresh_process(bench_alignment, faces)
    comparison = {f"{row['arch']}_{row['size']}_b32_ms_vs_paper_m40": (
        row["latency_b32_ms"] / PAPER_MS_PER_32[row["arch"]])
        for row in rows if "error" not in row and row["size"] == 224}
    return {
        "machine": machine(), "quick": quick, "rows": rows, "face_alignment": alignment,
        "paper_ms_per_32_images_m40": PAPER_MS_PER_32,
        "ratio_to_paper": comparison,
        "memory_note": ("peak_rss_mb: resource.getrusage(RUSAGE_SELF).ru_maxrss of a fresh "
                        "process measuring only that row (framework runtime included; "
                        "baseline_rss_mb is the same figure right after imports); "
                        "accelerator_peak_mb: the backend's own peak device allocation"),
        "latency_note": ("median (and minimum) wall time of model.predict_on_batch on random "
                         "images after a warm-up call per batch shape; outputs copied to the "
                         "host; images_per_s uses the median"),
    }


def main(argv) -> int:
    """absl entry point: measure, print the table, write the JSON."""
    from absl import flags

    values = flags.FLAGS
    if len(argv) > 1:
        print(f"unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    if values.predict_photos:
        return _main_predict(values)
    try:
        sizes = [int(size) for size in values.sizes.split(",") if size.strip()]
    except ValueError:
        print(f"error: --sizes must be comma-separated integers, got '{values.sizes}'",
              file=sys.stderr)
        return 2
    if values.config:
        from tfdldl.config import ConfigError
        from tfdldl.experiment import load_experiment

        try:
            configured = load_experiment(values.config).model.input_size
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        sizes = sizes if configured in sizes else sizes + [configured]
    report = run_benchmark(sizes, values.quick, values.faces)
    print(format_table(report["rows"]))
    alignment = report["face_alignment"]
    if "error" in alignment:
        print(f"face alignment: error: {alignment['error']}")
    else:
        print(f"face alignment (data_prep): {alignment['pictures_per_s']:.1f} pictures/s on "
              f"{alignment['source']}, faces found in {alignment['faces_found']}")
    for key, ratio in report["ratio_to_paper"].items():
        print(f"{key}: {ratio:.1f}x the paper's M40 time")
    info = report["machine"]
    print(f"machine: {info['cpu']}, {info['cores']} cores, backend {info['backend']}, "
          f"load average at start {info['load_average_1_5_15'][0]:.2f}")
    _write_report(values.out, report)
    return 0


def _write_report(path: str, report: dict[str, Any]) -> None:
    if path:
        from tfdldl.jsonio import write_json

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_json(path, report)
        print(f"wrote {path}")


def _main_predict(values) -> int:
    """``--predict_photos``: the end-to-end predict benchmark against the peer."""
    if not values.model:
        print("error: --predict_photos needs --model (a SavedModel folder or .keras file)",
              file=sys.stderr)
        return 2
    if not os.path.isdir(values.predict_photos):
        print(f"error: --predict_photos {values.predict_photos} is not a folder",
              file=sys.stderr)
        return 2
    from tfdldl.bench_predict import bench_predict, format_predict_report
    from tfdldl.inference import ModelLoadError

    try:
        report = bench_predict(values.predict_photos, values.model, values.batch_size,
                               values.min_face_size, values.max_side, values.peer,
                               values.cold_start, chunk_batches=values.chunk_batches)
    except (ModelLoadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["machine"] = machine()
    print(format_predict_report(report))
    _write_report(values.out, report)
    return 0


def run() -> None:
    """Entry point of ``python -m tfdldl.bench``."""
    from absl import app, flags

    from tfdldl import bench_predict

    flags.DEFINE_string("out", "runs/bench.json", "JSON output file ('' for none).")
    flags.DEFINE_string("sizes", "224,112", "Input sizes, pixels, comma-separated.")
    flags.DEFINE_string("config", None, "An experiment YAML whose model.input_size is "
                        "measured too (the configured size).")
    flags.DEFINE_bool("quick", False, "Fewer timed repetitions (a rougher, faster run).")
    flags.DEFINE_integer("faces", 32, "Pictures for the face alignment rate.")
    flags.DEFINE_string("predict_photos", None, "A folder of photos: measure end-to-end "
                        "tfdldl.predict photos/s on it (split into read, detection, "
                        "alignment, model) against the peer package, instead of the model rows.")
    flags.DEFINE_string("model", None, "With --predict_photos: the model to predict with.")
    flags.DEFINE_integer("batch_size", 32, "With --predict_photos: photos per detection batch.")
    flags.DEFINE_integer("chunk_batches", 2, "With --predict_photos: detection batches per "
                         "interleaved chunk (predict detects each next batch while the model "
                         "runs, as over a whole folder; the first batch of a chunk cannot).")
    flags.DEFINE_integer("min_face_size", None, "With --predict_photos: as tfdldl.predict's.")
    flags.DEFINE_integer("max_side", 1024, "With --predict_photos: as tfdldl.predict's.")
    flags.DEFINE_bool("peer", True, "With --predict_photos: also time the peer package "
                      f"{bench_predict.PEER_PACKAGE}, "
                      "interleaved, when it is installed.")
    flags.DEFINE_bool("cold_start", True, "With --predict_photos: also time one fresh "
                      "process of each on one photo.")
    app.run(main)


if __name__ == "__main__":
    run()
