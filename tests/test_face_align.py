"""tfdldl.face_align: real MTCNN on real UTKFace faces, the template, the transform."""

import os

import cv2
import numpy as np
import pytest

from tfdldl.face_align import (Detection, FaceAligner, _rank, pyramid_scales,
                               similarity_transform, template)
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


def test_template_keeps_the_face_inside_with_margin():
    points = template(224)
    assert points.shape == (5, 2) and points.dtype == np.float32
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left before right
    eye_to_mouth = points[3:, 1].mean() - points[:2, 1].mean()
    assert points[:2, 1].mean() >= 1.2 * eye_to_mouth  # room for forehead and hairline
    assert 224 - points[3:, 1].mean() >= 0.6 * eye_to_mouth  # room for the chin
    np.testing.assert_allclose(template(112) * 2, points, rtol=1e-6)


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
