"""Evaluate a trained model on a TFRecord split: ``results.json`` plus a visual report.

    python -m tfdldl.evaluate --model saved_models/utkface_thin/1 --data data/utkface \
        --split test --out runs/eval_utkface

Metrics (NumPy, from :mod:`tfdldl.metrics`): MAE, bias (mean predicted − true), RMSE,
Pearson correlation, the cumulative score curve CS(θ), the ChaLearn ε-error when the data
carries a σ per face (manifest sigma policy "per_sample"), and MAE/bias per label band
(age decades). Predictions are averaged over each face and its mirror image (the paper's
test protocol) unless ``--no_flip``.

The model must have been trained on the data's label space: a mismatch is refused
before any prediction (``Manifest.require_label_space``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Iterator

import numpy as np

from tfdldl import cli, metrics, tfrecord_reader
from tfdldl.inference import Predictor, predict_flip_averaged
from tfdldl.label_space import LabelSpace
from tfdldl.jsonio import write_json
from tfdldl.manifest import Manifest

RESULTS_NAME = "results.json"
# Faces of each kind in the report's best/worst grid.
GRID_FACES = 6
# Number of bands the label range is cut into when it is not age (decades).
DEFAULT_BANDS = 8
AGE_BAND_WIDTH = 10.0


@dataclasses.dataclass
class SplitPredictions:
    """Everything evaluated on one split, in record order.

    Attributes:
      true: float32 [N] labels.
      sigma: float32 [N] σ stored with each record.
      value: float32 [N] predictions.
      stddev: float32 [N] predicted standard deviations (NaN without a distribution).
      distribution: float32 [N, K] predicted distributions, or None.
      encoded: N encoded aligned faces (JPEG bytes) for the face grid.
    """

    true: np.ndarray
    sigma: np.ndarray
    value: np.ndarray
    stddev: np.ndarray
    distribution: np.ndarray | None
    encoded: list[bytes]


def decode_jpegs(encoded: list[bytes]) -> np.ndarray:
    """Aligned-face JPEGs -> float32 [N, S, S, 3] RGB 0..255, decoded as training, predict and
    serving decode them (tfdldl.image_io's rules; tests/test_decoder_parity.py)."""
    from tfdldl.image_io import decode_rgb

    return np.stack([decode_rgb(data, f"record {i}", jpeg_warnings=False)
                     for i, data in enumerate(encoded)]).astype(np.float32)


def read_split(manifest: Manifest, split: str, batch_size: int) -> Iterator[dict[str, Any]]:
    """Batches of one split in file order: {"encoded", "image", "label", "sigma"}.

    Records come from :func:`tfdldl.tfrecord_reader.read_split` (which checks CRCs and the
    manifest's record count); images are decoded by :func:`decode_jpegs`, so evaluation
    sees the pixels training saw.

    Args:
      manifest: the TFRecord folder.
      split: split name; a missing or empty split raises ManifestError.
      batch_size: records per batch (the last may be smaller).
    Yields:
      "encoded": list of B JPEG bytes; "image": float32 [B, S, S, 3] RGB 0..255;
      "label", "sigma": float32 [B].
    """
    faces = tfrecord_reader.read_split(manifest, split)
    for start in range(0, len(faces), batch_size):
        stop = start + batch_size
        encoded = faces.jpegs[start:stop]
        yield {"encoded": encoded, "image": decode_jpegs(encoded),
               "label": faces.labels[start:stop], "sigma": faces.sigmas[start:stop]}


def collect_predictions(predictor: Predictor, manifest: Manifest, split: str,
                        batch_size: int = 64, flip: bool = True) -> SplitPredictions:
    """Run ``predictor`` over a whole split (flip-averaged when ``flip``)."""
    parts: dict[str, list] = {"true": [], "sigma": [], "value": [], "stddev": [],
                              "distribution": [], "encoded": []}
    for batch in read_split(manifest, split, batch_size):
        outputs = (predict_flip_averaged(predictor, batch["image"]) if flip
                   else predictor.predict_images(batch["image"]))
        parts["true"].append(batch["label"])
        parts["sigma"].append(batch["sigma"])
        parts["value"].append(outputs["value"].reshape(-1))
        parts["stddev"].append(outputs["stddev"].reshape(-1))
        if "distribution" in outputs:
            parts["distribution"].append(outputs["distribution"])
        parts["encoded"].extend(batch["encoded"])
    return SplitPredictions(
        true=np.concatenate(parts["true"]).astype(np.float32),
        sigma=np.concatenate(parts["sigma"]).astype(np.float32),
        value=np.concatenate(parts["value"]).astype(np.float32),
        stddev=np.concatenate(parts["stddev"]).astype(np.float32),
        distribution=(np.concatenate(parts["distribution"]).astype(np.float32)
                      if parts["distribution"] else None),
        encoded=parts["encoded"])


def band_edges(label_space: LabelSpace) -> np.ndarray:
    """Band boundaries over [minimum, maximum]: decades for age, else 8 equal bands; float64."""
    low, high = float(label_space.minimum), float(label_space.maximum)
    if label_space.name == "age":
        start = np.floor(low / AGE_BAND_WIDTH) * AGE_BAND_WIDTH
        edges = np.arange(start, high + AGE_BAND_WIDTH, AGE_BAND_WIDTH)
        edges = edges[edges < high]
        return np.append(edges, high)
    return np.linspace(low, high, DEFAULT_BANDS + 1)


def band_table(true: np.ndarray, predicted: np.ndarray, edges: np.ndarray) -> list[dict[str, Any]]:
    """MAE and bias per band of the TRUE label; bands are [low, high), the last includes high.

    Returns:
      One dict per band: "low", "high", "count", "mae", "bias" (None when empty).
    """
    true = np.asarray(true, np.float64)
    error = np.asarray(predicted, np.float64) - true
    rows = []
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        inside = (true >= low) & ((true <= high) if last else (true < high))
        count = int(inside.sum())
        rows.append({"low": float(low), "high": float(high), "count": count,
                     "mae": float(np.abs(error[inside]).mean()) if count else None,
                     "bias": float(error[inside].mean()) if count else None})
    return rows


def default_thetas(label_space: LabelSpace) -> np.ndarray:
    """CS thresholds: 11 values from 0 to a tenth of the label range (0..10 years for age)."""
    return np.linspace(0.0, (label_space.maximum - label_space.minimum) / 10.0, 11)


def compute_results(predictions: SplitPredictions, label_space: LabelSpace,
                    per_sample_sigma: bool) -> dict[str, Any]:
    """The metric dict written to results.json.

    Args:
      predictions: the split's labels and predictions.
      label_space: the model's (= the data's) label space.
      per_sample_sigma: whether the records' σ are per-face annotations (ChaLearn);
        ε-error is only meaningful then and is None otherwise.
    Returns:
      {"count", "mae", "bias", "rmse", "pearson", "epsilon_error",
       "mean_predicted_stddev", "cs": {"thetas", "values"}, "cs_at": {θ: CS}, "bands"}.
    """
    true, value = predictions.true, predictions.value
    thetas = default_thetas(label_space)
    curve = np.asarray(metrics.cs_curve(value, true, thetas), np.float64)
    stddev = predictions.stddev[np.isfinite(predictions.stddev)]
    return {
        "count": int(len(true)),
        "mae": float(metrics.mae(value, true)),
        "bias": float(np.mean(value.astype(np.float64) - true)),
        "rmse": float(metrics.rmse(value, true)),
        "pearson": _finite_or_none(metrics.pearson(value, true)) if len(true) > 1 else None,
        "epsilon_error": (float(metrics.epsilon_error(value, true, predictions.sigma))
                          if per_sample_sigma else None),
        "mean_predicted_stddev": float(stddev.mean()) if len(stddev) else None,
        "cs": {"thetas": [float(t) for t in thetas], "values": [float(c) for c in curve]},
        "cs_at": {f"{t:g}": float(c) for t, c in zip(thetas, curve)},
        "bands": band_table(true, value, band_edges(label_space)),
    }


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined metric (e.g. Pearson of constant predictions) is None."""
    value = float(value)
    return value if np.isfinite(value) else None


def face_groups(predictions: SplitPredictions, count: int = GRID_FACES):
    """(title, [FaceSample]) groups of the best and worst predicted faces for the report."""
    from tfdldl.image_io import decode_rgb
    from tfdldl.report import FaceSample, select_best_worst

    best, worst = select_best_worst(predictions.true, predictions.value, count)

    def samples(indexes):
        return [FaceSample(
            image=decode_rgb(predictions.encoded[i], f"record {i}"),
            true=float(predictions.true[i]), predicted=float(predictions.value[i]),
            distribution=(None if predictions.distribution is None
                          else predictions.distribution[i]))
            for i in indexes]

    return [("best predicted", samples(best)), ("worst predicted", samples(worst))]


def evaluate(model_path: str, data_dir: str, split: str = "test", out_dir: str | None = None,
             flip: bool = True, batch_size: int = 64, report: bool = True) -> dict[str, Any]:
    """Evaluate ``model_path`` on ``data_dir``'s ``split``; write results.json (and the report).

    Returns:
      The results dict (also written to ``out_dir/results.json`` when out_dir is given).
    Raises:
      ModelLoadError, ManifestError: bad model, bad data or mismatched label spaces.
      ReportError: report requested but matplotlib missing (results.json is written first).
    """
    from tfdldl.inference import load_predictor
    from tfdldl.manifest import read_manifest

    manifest = read_manifest(data_dir)
    predictor = load_predictor(model_path)
    manifest.require_label_space(predictor.label_space, what=f"the model {model_path}")
    manifest.require_framing(predictor.framing, what=f"the model {model_path}")
    predictions = collect_predictions(predictor, manifest, split, batch_size, flip, progress)
    fitted = (calibrate(predictor, predictions, manifest.root, split, flip)
              if calibrate_model else None)
    per_sample = manifest.sigma.get("policy") == "per_sample"
    results = {
        "model": os.path.abspath(model_path), "data": manifest.root, "split": split,
        "flip_averaged": flip, "label_space": predictor.label_space.to_dict(),
        "sigma_policy": manifest.sigma.get("policy"),
        **compute_results(predictions, predictor.label_space, per_sample),
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, RESULTS_NAME), results)
        if report:
            from tfdldl.report import write_report

            write_report(out_dir, results, predictions.true, predictions.value,
                         predictor.label_space, face_groups(predictions))
    return results


def summary(results: dict[str, Any]) -> str:
    """A few human lines: N, MAE, bias, ε-error, CS at a few θ."""
    lines = [f"{results['split']}: N={results['count']}  MAE {results['mae']:.3f}  "
             f"bias {results['bias']:+.3f}  RMSE {results['rmse']:.3f}  "
             f"Pearson {results['pearson'] if results['pearson'] is None else round(results['pearson'], 4)}"]
    if results["epsilon_error"] is not None:
        lines.append(f"epsilon-error {results['epsilon_error']:.4f}")
    thetas = list(results["cs_at"].items())
    picks = [thetas[i] for i in (1, 3, 5, 10) if i < len(thetas)]
    lines.append("CS: " + "  ".join(f"@{theta} {100 * score:.1f}%" for theta, score in picks))
    return "\n".join(lines)


def main(argv) -> int:
    """absl entry point: evaluate, print a summary, exit 2 with a message on bad input."""
    from absl import flags

    from tfdldl.inference import ModelLoadError
    from tfdldl.manifest import ManifestError
    from tfdldl.report import ReportError

    if len(argv) > 1:
        print(f"unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        return 2
    values = flags.FLAGS
    try:
        results = evaluate(values.model, values.data, values.split, values.out,
                           flip=not values.no_flip, batch_size=values.batch_size,
                           report=not values.no_report)
    except (ModelLoadError, ManifestError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ReportError as error:
        print(f"results.json written; no report: {error}", file=sys.stderr)
        return 1
    print(summary(results))
    if values.out:
        print(f"wrote {os.path.join(values.out, RESULTS_NAME)}"
              + ("" if values.no_report else " and report.html"))
    return 0


def define_flags() -> None:
    """The command-line flags of ``python -m tfdldl.evaluate``."""
    from absl import flags

    flags.DEFINE_string("model", None, "SavedModel folder (saved_models/<name>/<version>) "
                        "or .keras file.", required=True)
    flags.DEFINE_string("data", None, "TFRecord folder with manifest.json.", required=True)
    flags.DEFINE_string("split", "test", "Split to evaluate.")
    flags.DEFINE_string("out", None, "Folder for results.json and the report "
                        "(nothing is written without it).")
    flags.DEFINE_bool("no_flip", False, "Do not average each face with its mirror image.")
    flags.DEFINE_bool("no_report", False, "Write results.json only (no matplotlib needed).")
    flags.DEFINE_integer("batch_size", 64, "Faces per forward pass.")


def run() -> None:
    """Console-script entry point (``tfdldl-evaluate``)."""
    cli.run_main(main, define_flags)


if __name__ == "__main__":
    run()
