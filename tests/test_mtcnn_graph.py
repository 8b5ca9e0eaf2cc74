"""The compiled MTCNN (tfdldl.mtcnn_graph) against the mtcnn package, and the detection rate
of FaceAligner's fast defaults on real UTKFace faces, alone and placed into larger scenes."""

import glob
import os

import numpy as np
import pytest

from tfdldl.bench_predict import make_scene
from tfdldl.face_align import FaceAligner
from tfdldl.face_detect import DETECTION_BATCH, _canvas_groups, _graph_mtcnn, pyramid_scales
from tfdldl.image_io import read_rgb

THRESHOLDS = (0.6, 0.7, 0.7)


@pytest.fixture(scope="module")
def chips(utkface_dir):
    """32 real 200x200 faces spread over the sorted folder (ages, genders, ethnicities)."""
    files = sorted(glob.glob(os.path.join(utkface_dir, "*.jpg")))[5::613][:32]
    return [read_rgb(path) for path in files]


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


def test_graph_stages_find_what_the_package_finds(chips):
    """Same networks, weights and box arithmetic: same boxes, scores and landmarks."""
    from mtcnn import MTCNN

    batch = chips[:6]
    expected = MTCNN().detect_faces(batch, box_format="xyxy", output_type="numpy",
                                    min_face_size=20, threshold_pnet=THRESHOLDS[0],
                                    threshold_rnet=THRESHOLDS[1],
                                    threshold_onet=THRESHOLDS[2])
    # At 200 px and a 20 px minimum face the package's own pyramid is this one.
    got = _graph_mtcnn(THRESHOLDS).detect(batch, pyramid_scales(200, 20, 0.709))
    assert len(expected) >= len(batch) - 1
    assert got.shape == expected.shape
    np.testing.assert_allclose(_sorted_rows(got), _sorted_rows(expected), atol=1e-3)


def test_photos_of_different_shapes_share_a_padded_batch(chips):
    """A face detected in a padded canvas beside a larger photo lands where it does alone."""
    detector = _graph_mtcnn(THRESHOLDS)
    scene, (x, y, side) = make_scene(chips[1], np.random.default_rng(3))
    small = chips[0][:190, :180]
    pyramid = pyramid_scales(190, 40, 0.709)
    alone = detector.detect([small], pyramid)
    together = detector.detect([small, scene[:300, :400]], pyramid)
    mine = together[together[:, 0] == 0]
    assert len(alone) == len(mine) == 1
    face_side = alone[0, 3] - alone[0, 1]
    assert np.abs(mine[0, 1:5] - alone[0, 1:5]).max() < 0.05 * face_side
    assert np.abs(mine[0, 6:] - alone[0, 6:]).max() < 0.05 * face_side
    assert (mine[:, 1:5] >= 0).all() and (mine[:, [3]] < 180).all()  # clipped to its own width


def test_smallest_face_follows_the_photo_unless_given():
    relative, fixed = FaceAligner(64), FaceAligner(64, min_face_size=30)
    assert relative.smallest_face((200, 200, 3)) == 20  # at least MIN_FACE_PIXELS
    assert relative.smallest_face((3000, 4000, 3)) == 3000 / 16
    assert fixed.smallest_face((3000, 4000, 3)) == 30
    # The relative face is 24 px in the detection copy: every large 4:3 photo -> 384x512.
    for shape in ((900, 1200), (3000, 4000), (1536, 2048)):
        ratio = relative._detection_ratio(shape)
        assert round(shape[0] * ratio) == 384 and round(shape[1] * ratio) == 512
    assert fixed._detection_ratio((3000, 4000)) == 1024 / 4000  # max_side only


def test_near_shapes_share_a_canvas_and_batches_stay_bounded():
    shapes = [(384, 512), (200, 200), (384, 511), (300, 400), (200, 200)]
    groups = _canvas_groups(shapes)
    assert sorted(sorted(group) for group in groups) == [[0, 2], [1, 4], [3]]
    assert [len(group) for group in _canvas_groups([(50, 50)] * 70)] == [
        DETECTION_BATCH, DETECTION_BATCH, 70 - 2 * DETECTION_BATCH]


def _found(faces, placement) -> bool:
    """Whether a detected box is centred inside the square where the face was placed."""
    x, y, side = placement
    return any(x <= box_x + width / 2 <= x + side and y <= box_y + height / 2 <= y + side
               for box_x, box_y, width, height in (face.box for face in faces))


def test_fast_defaults_find_as_many_faces_as_the_exhaustive_search(chips):
    """Chips and the same faces in 450-1200 px scenes: the relative minimum face on a
    capped copy finds every face that a 20 px search on the full photo finds."""
    rng = np.random.default_rng(0)
    scenes = [make_scene(chip, rng) for chip in chips[:16]]
    fast = FaceAligner(128)
    exhaustive = FaceAligner(128, min_face_size=20, max_side=1200)
    for name, images, hit in (
            ("chips", chips, [None] * len(chips)),
            ("scenes", [scene for scene, _ in scenes], [place for _, place in scenes])):
        def rate(aligner):
            found = aligner.detect_batch(images)
            return sum(bool(faces) if place is None else _found(faces, place)
                       for faces, place in zip(found, hit))
        fast_rate, reference = rate(fast), rate(exhaustive)
        assert fast_rate >= reference, f"{name}: {fast_rate} vs {reference} faces"
        assert fast_rate >= len(images) - 1, f"{name}: found {fast_rate}/{len(images)}"


def test_photos_detected_together_find_the_faces_each_finds_alone(chips):
    """Chips of one shape go through each MTCNN stage as one batch (predict's default):
    the faces, boxes, confidences and landmarks are those of one detection per photo."""
    aligner = FaceAligner(128)
    together = aligner.detect_batch(chips)
    assert sum(bool(faces) for faces in together) >= len(chips) - 1
    for photo, batched in zip(chips, together):
        alone = aligner.detect(photo)
        assert len(alone) == len(batched)
        for one, other in zip(alone, batched):  # float32 sums over other batch sizes
            np.testing.assert_allclose(one.box, other.box, atol=1e-3)
            np.testing.assert_allclose(one.landmarks, other.landmarks, atol=1e-3)
            assert one.confidence == pytest.approx(other.confidence, abs=1e-5)



@pytest.mark.parametrize("method", ["union", "min"])
def test_nms_keeps_the_rows_the_package_keeps(method, monkeypatch):
    """The flat all-images NMS against the package's per-image one (after the same stable
    sort), on boxes with tied confidences, in blocks small enough to split images."""
    from mtcnn.utils.bboxes import smart_nms_from_bboxes

    from tfdldl import mtcnn_graph

    rng = np.random.default_rng(1)
    corner = rng.uniform(0, 80, (300, 2))
    boxes = np.concatenate([rng.integers(0, 7, (300, 1)), corner,
                            corner + rng.uniform(5, 40, (300, 2)),
                            rng.choice([0.7, 0.9, 1.0], (300, 1))], axis=1)
    order = np.lexsort((-boxes[:, 5], boxes[:, 0]))
    expected = smart_nms_from_bboxes(boxes[order], threshold=0.5, method=method,
                                     initial_sort=False)
    monkeypatch.setattr(mtcnn_graph, "_NMS_PAIRS", 500)
    got = mtcnn_graph._nms(boxes, 0.5, method)
    assert 0 < len(got) < len(boxes)
    np.testing.assert_array_equal(got, expected)
