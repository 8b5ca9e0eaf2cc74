"""tfdldl.face_align: real MTCNN on real UTKFace faces, the template, the transform."""

import os

import cv2
import numpy as np
import pytest

from tfdldl.face_align import (DEFAULT_FRAMING, LEGACY_FRAMING, FaceAligner, Framing,
                               similarity_transform, template)
from tfdldl.face_detect import Detection, _rank, pyramid_scales
from tfdldl.image_io import read_rgb

# Four real faces of different ages, genders and ethnicities.
FACES = (
    "1_1_1_20170109191050443.jpg.chip.jpg",
    "26_1_1_20170113012119680.jpg.chip.jpg",
    "44_0_3_20170119184239800.jpg.chip.jpg",
    "96_1_2_20170105174624519.jpg.chip.jpg",
)


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner(output_size=128, min_face_size=40)


@pytest.fixture(scope="module")
def faces(utkface_dir):
    return [read_rgb(os.path.join(utkface_dir, name)) for name in FACES]


def test_legacy_template_keeps_the_face_inside_with_margin():
    points = template(224, LEGACY_FRAMING)
    assert points.shape == (5, 2) and points.dtype == np.float32
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left before right
    eye_to_mouth = points[3:, 1].mean() - points[:2, 1].mean()
    assert points[:2, 1].mean() >= 1.2 * eye_to_mouth  # room for forehead and hairline
    assert 224 - points[3:, 1].mean() >= 0.6 * eye_to_mouth  # room for the chin
    np.testing.assert_allclose(template(112, LEGACY_FRAMING) * 2, points, rtol=1e-6)


def test_framing_scales_and_moves_the_template():
    base = template(200, Framing(1.0, 0.0))
    zoomed = template(200, Framing(1.25, 0.0))
    eye_distance = lambda points: points[1, 0] - points[0, 0]  # noqa: E731
    assert eye_distance(zoomed) == pytest.approx(1.25 * eye_distance(base), rel=1e-5)
    np.testing.assert_allclose((zoomed + base) / 2 - 100, 1.125 * (base - 100), atol=1e-3)
    raised = template(200, Framing(1.0, -0.1))
    np.testing.assert_allclose(raised - base, [[0.0, -20.0]] * 5, atol=1e-4)
    assert Framing.from_dict(DEFAULT_FRAMING.to_dict()) == DEFAULT_FRAMING
    assert Framing.from_dict(None) == LEGACY_FRAMING  # recorded before framings were
    for bad in (dict(scale=0.0), dict(offset_y=0.9), dict(border="zero")):
        with pytest.raises(ValueError, match="framing"):
            Framing(**bad)


def test_coverage_is_the_share_of_the_crop_inside_the_photo():
    aligner = FaceAligner(output_size=100, framing=Framing(1.0, 0.0))
    landmarks = template(100, Framing(1.0, 0.0))  # the photo is the crop itself
    assert aligner.coverage((100, 100), landmarks) == pytest.approx(1.0)
    assert aligner.coverage((100, 50), landmarks) == pytest.approx(0.5, abs=1e-4)
    assert aligner.coverage((300, 300), landmarks + 100) == pytest.approx(1.0)
    # A photo turned 45 degrees about the crop centre: compare with a warped pixel mask.
    angle = np.pi / 4
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    mask = np.ones((100, 100), np.uint8)
    rotated = (landmarks - 50) @ rotation.T + 50
    matrix = similarity_transform(rotated, landmarks)
    expected = cv2.warpAffine(mask, matrix, (100, 100), flags=cv2.INTER_NEAREST).mean()
    assert aligner.coverage((100, 100), rotated) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("border", ["reflect", "replicate"])
def test_border_fill_is_not_black(faces, border):
    """A crop wider than its photo is filled from the photo's own pixels, not black."""
    aligner = FaceAligner(output_size=128, min_face_size=40, framing=Framing(0.8, 0.0, border))
    found = aligner.detect_and_align(faces[1])[0]
    assert found.coverage < 0.6  # this wide framing leaves the 200 px chip
    assert (found.image.max(axis=2) <= 3).mean() < 0.01
    black = FaceAligner(output_size=128, min_face_size=40, framing=LEGACY_FRAMING)
    assert (black.detect_and_align(faces[1])[0].image.max(axis=2) <= 3).mean() > 0.2


def test_default_framing_is_covered_by_utkface_chips(aligner, faces):
    coverages = [found[0].coverage for found in aligner.detect_and_align_batch(faces)]
    assert np.mean(coverages) >= 0.95, coverages


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = np.random.default_rng(0).uniform(0, 100, (5, 2))
    matrix = similarity_transform(source, source @ rotation.T + shift)
    np.testing.assert_allclose(matrix, np.hstack([rotation, shift[:, None]]), atol=1e-9)


def test_pyramid_stops_at_the_pnet_window():
    scales = pyramid_scales(200, 60, 0.709)
    assert scales[0] == pytest.approx(12 / 60)
    assert 200 * scales[-1] >= 12 > 200 * scales[-1] * 0.709
    assert len(pyramid_scales(50, 80, 0.709)) == 0  # image smaller than the minimum face


def test_real_faces_are_found_and_land_on_the_template(aligner, faces):
    results = aligner.detect_and_align_batch(faces, max_faces=1)
    target = template(128)
    for name, found in zip(FACES, results):
        assert len(found) == 1, f"no face found in {name}"
        face = found[0]
        assert face.image.shape == (128, 128, 3) and face.image.dtype == np.uint8
        assert face.confidence >= aligner.thresholds[2]
        assert face.landmarks[0, 0] < face.landmarks[1, 0]  # image-left eye first
        # Detect again in the aligned crop: its landmarks must sit on the template.
        again = FaceAligner(output_size=128, min_face_size=30).detect(face.image)
        assert again, f"no face in the aligned crop of {name}"
        error = np.linalg.norm(again[0].landmarks - target, axis=1).mean()
        assert error < 0.04 * 128, f"{name}: landmarks {error:.1f} px off the template"


def test_noise_has_no_face(aligner):
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    assert aligner.detect_and_align(noise) == []
    assert aligner.detect(noise[:20, :20]) == []  # smaller than the minimum face


def test_huge_photo_is_downscaled_for_detection(faces):
    """A 6000x6000 photo: detection runs on a <=1024 px copy, landmarks come back full size."""
    canvas = np.full((6000, 6000, 3), 90, np.uint8)
    face = cv2.resize(faces[1], (1600, 1600), interpolation=cv2.INTER_CUBIC)
    canvas[2000:3600, 3000:4600] = face
    aligner = FaceAligner(output_size=128, min_face_size=20, max_side=1024)
    small = aligner.detect(faces[1])[0]
    found = aligner.detect_and_align(canvas, max_faces=1)
    assert found, "no face found in the 6000x6000 photo"
    expected = small.landmarks * 8 + np.array([3000, 2000])
    assert np.linalg.norm(found[0].landmarks - expected, axis=1).max() < 60  # 60 px of 6000
    assert found[0].image.shape == (128, 128, 3)


def test_most_confident_then_most_central_face_wins():
    def face(x, confidence):
        return Detection(box=(x, 40.0, 20.0, 20.0), confidence=confidence,
                         landmarks=np.zeros((5, 2), np.float32))

    edge, centre, weak = face(0.0, 0.99991), face(40.0, 0.99987), face(40.0, 0.8)
    assert _rank([edge, weak, centre], (100, 100, 3)) == [centre, edge, weak]
    strong_edge = face(0.0, 0.999)
    assert _rank([weak, strong_edge], (100, 100, 3))[0] is strong_edge


def test_center_crop_and_bad_input(aligner):
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, 100:200] = 255
    crop = aligner.center_crop(wide)
    assert crop.shape == (128, 128, 3) and crop.min() == 255
    with pytest.raises(ValueError, match="uint8 RGB image"):
        aligner.detect(wide.astype(np.float32))
