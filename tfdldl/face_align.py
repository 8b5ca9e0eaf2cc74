"""Faces found by MTCNN aligned onto a 5-point template, shared by training data and prediction.

Training faces (data_prep.build) and faces given to a trained model (tfdldl.predict) pass
through this one module with the same template, so the model never sees a framing at
inference that it did not see in training.

Detection: :class:`tfdldl.face_detect.FaceDetector` (MTCNN, batched), of which
:class:`FaceAligner` is the aligning subclass.

Framing (the template's field of view): the widely used 5-point ArcFace template for a
112 px crop (eye centres, nose tip, mouth corners), scaled about the crop centre by
:attr:`Framing.scale`, moved down by :attr:`Framing.offset_y` (a fraction of the side;
negative moves the face up) and scaled to ``output_size``. The framing is part of a
model's contract: data_prep records it in the manifest, training copies it into the
exported model, and tfdldl.predict aligns photos with the framing of the model it loads.

:data:`DEFAULT_FRAMING` (scale 1.25, offset -0.16) is the field of view that UTKFace's
200 px chips cover: on 397 random chips the aligned crop lies on average 98.5 % inside
the chip (10th percentile 96 %), with the eyes at 29 % of the crop's height and the mouth
at 74 %, i.e. about 0.64 eye-to-mouth distances of forehead and 0.56 of chin, the most
the chips hold. :data:`LEGACY_FRAMING` (scale 0.80, no offset, black border) is the
framing of models exported before the framing was recorded: a wider field of view that
UTKFace chips covered only 45 % of (black top quarter and side bands).

Border: pixels of a crop that fall outside the source photo cannot be left black: the
model would learn faces floating in black, while users' photos have hair, background
and shoulders there. ``reflect`` mirrors the photo at its edge (cv2.BORDER_REFLECT_101),
``replicate`` repeats the edge pixels, ``black`` is the legacy constant. At one small
training budget (scripts/compare_framings.sh) the mirrored border beat the replicated one
on test MAE (8.30 vs 8.63) and in surroundings (age moved 1.24 vs 1.60 years), so it is the
default. The share of each crop inside its source is :meth:`FaceAligner.coverage`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import numpy as np

from tfdldl.face_detect import FaceDetector, check_rgb

# ArcFace's 5-point template in a 112x112 crop: left eye, right eye, nose tip, left and
# right mouth corner, (x, y) pixels; "left" is the image's left.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
BORDER_MODES = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE,
                "black": cv2.BORDER_CONSTANT}


@dataclasses.dataclass(frozen=True)
class Framing:
    """Where the face sits in an aligned crop, and what fills pixels outside the photo.

    Attributes:
      scale: size of the ArcFace 5-point template relative to its 112 px original; larger
        zooms in (a narrower field of view). Eye distance = 0.3146 x scale of the side.
      offset_y: vertical shift of the template, fraction of the crop side; negative moves
        the face up (less forehead, more chin).
      border: "reflect", "replicate" or "black" for crop pixels outside the source photo.
    Raises:
      ValueError: scale outside (0.2, 3], |offset_y| > 0.5, or an unknown border.
    """

    scale: float = 1.25
    offset_y: float = -0.16
    border: str = "reflect"

    def __post_init__(self):
        if not 0.2 < self.scale <= 3.0:
            raise ValueError(f"framing scale must lie in (0.2, 3], got {self.scale}")
        if not -0.5 <= self.offset_y <= 0.5:
            raise ValueError(f"framing offset_y must lie in [-0.5, 0.5], got {self.offset_y}")
        if self.border not in BORDER_MODES:
            raise ValueError(f"framing border must be one of {sorted(BORDER_MODES)}, "
                             f"got {self.border!r}")

    def to_dict(self) -> dict:
        """JSON-ready form, as stored in manifests and exported models."""
        return {"template": "arcface_5pt", "scale": float(self.scale),
                "offset_y": float(self.offset_y), "border": self.border}

    @classmethod
    def from_dict(cls, values: dict | None) -> "Framing":
        """Inverse of :meth:`to_dict`; None or {} (recorded before framings were) is
        :data:`LEGACY_FRAMING`."""
        if not values:
            return LEGACY_FRAMING
        return cls(float(values["scale"]), float(values["offset_y"]), str(values["border"]))

    def describe(self) -> str:
        """One line for messages, e.g. ``scale 1.25, offset_y -0.16, border reflect``."""
        return f"scale {self.scale:g}, offset_y {self.offset_y:+g}, border {self.border}"


DEFAULT_FRAMING = Framing()
LEGACY_FRAMING = Framing(scale=0.80, offset_y=0.0, border="black")


def template(output_size: int, framing: Framing = DEFAULT_FRAMING) -> np.ndarray:
    """The 5 target landmark positions in an ``output_size`` square crop, float32 [5, 2] (x, y) px."""
    centre = 56.0
    placed = centre + (ARCFACE_TEMPLATE_112 - centre) * framing.scale
    placed[:, 1] += framing.offset_y * 112.0
    return (placed * (output_size / 112.0)).astype(np.float32)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``source`` onto ``target``.

    Umeyama's closed form; no reflection.

    Args:
      source: float [N, 2] points (N >= 2), e.g. detected landmarks, pixels.
      target: float [N, 2] corresponding points, e.g. the template, pixels.
    Returns:
      float64 [2, 3] matrix M with target ≈ M @ [x, y, 1].
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (source_centred ** 2).sum() / len(source)
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


@dataclasses.dataclass(frozen=True)
class AlignedFace:
    """A detected face warped onto the template.

    Attributes:
      image: uint8 [S, S, 3] RGB, S = the aligner's output_size.
      box: (x, y, width, height) of the detection in the input image, pixels.
      confidence: the detector's face probability, 0..1.
      landmarks: float32 [5, 2] detected landmarks in the input image, pixels.
      coverage: share of the crop's area that lies inside the input image, 0..1.
    """

    image: np.ndarray
    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray
    coverage: float = 1.0


class FaceAligner(FaceDetector):
    """Detects faces with MTCNN (:class:`tfdldl.face_detect.FaceDetector`) and aligns them
    onto :func:`template`.

    Args:
      output_size: side of the aligned square crop, pixels.
      framing: the template's field of view and the border fill (:class:`Framing`).
      min_face_size, thresholds, scale_factor, max_side: the detector's, as
        :class:`tfdldl.face_detect.FaceDetector` (crops are cut from the full-resolution
        image even when it was detected on a downscaled copy).
    Raises:
      ValueError: output_size below 16 px, or a detector argument FaceDetector refuses.
    """

    def __init__(self, output_size: int = 224, min_face_size: int | None = None,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), scale_factor: float = 0.709,
                 max_side: int = 1024, framing: Framing = DEFAULT_FRAMING):
        if output_size < 16:
            raise ValueError(f"output_size must be at least 16 px, got {output_size}")
        super().__init__(min_face_size, thresholds, scale_factor, max_side)
        self.output_size = int(output_size)
        self.framing = framing
        self._template = template(self.output_size, framing)

    def align(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Warp ``rgb`` so that ``landmarks`` land on the template.

        Args:
          rgb: uint8 [H, W, 3] RGB.
          landmarks: float [5, 2] (x, y) in ``rgb``'s pixels, in the order of
            :class:`tfdldl.face_detect.Detection`.
        Returns:
          uint8 [S, S, 3] RGB, S = output_size; outside the photo is filled as the
          framing's border says.
        """
        check_rgb(rgb)
        matrix = self._matrix(landmarks)
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        if scale < 0.5:
            # Shrinking a lot with bilinear sampling aliases; pre-shrink with area averaging.
            shrink = 2.0 * scale
            rgb = cv2.resize(rgb, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            matrix = matrix @ np.diag([1.0 / shrink, 1.0 / shrink, 1.0])
        return cv2.warpAffine(rgb, matrix, (self.output_size, self.output_size),
                              flags=cv2.INTER_LINEAR,
                              borderMode=BORDER_MODES[self.framing.border],
                              borderValue=(0, 0, 0))

    def coverage(self, image_shape: Sequence[int], landmarks: np.ndarray) -> float:
        """Share of the aligned crop's area that lies inside the source image, 0..1.

        Args:
          image_shape: (H, W, ...) of the source image.
          landmarks: float [5, 2] (x, y) landmarks in that image, pixels.
        Returns:
          The area of (source rectangle mapped into the crop) ∩ (crop square), divided by
          the crop's area; 1.0 when no crop pixel comes from the border fill.
        """
        matrix = self._matrix(landmarks)
        height, width = float(image_shape[0]), float(image_shape[1])
        corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]])
        mapped = (corners @ matrix.T).astype(np.float32)
        side = float(self.output_size)
        crop = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float32)
        area, _ = cv2.intersectConvexConvex(mapped, crop)
        return float(np.clip(area / (side * side), 0.0, 1.0))

    def _matrix(self, landmarks: np.ndarray) -> np.ndarray:
        """The similarity transform [2, 3] from image pixels onto the template."""
        points = np.asarray(landmarks, np.float64).reshape(5, 2)
        return similarity_transform(points, self._template)

    def detect_and_align(self, rgb: np.ndarray, max_faces: int | None = None) -> list[AlignedFace]:
        """Detect faces in ``rgb`` and align each (best first); [] when there is none."""
        return self.detect_and_align_batch([rgb], max_faces)[0]

    def detect_and_align_batch(self, images: Sequence[np.ndarray],
                               max_faces: int | None = None) -> list[list[AlignedFace]]:
        """:meth:`detect_and_align` for many images, detecting same-shaped ones together."""
        aligned = []
        for image, faces in zip(images, self.detect_batch(images)):
            aligned.append([
                AlignedFace(self.align(image, face.landmarks), face.box, face.confidence,
                            face.landmarks, self.coverage(image.shape, face.landmarks))
                for face in faces[:max_faces]
            ])
        return aligned

    def center_crop(self, rgb: np.ndarray) -> np.ndarray:
        """The largest central square of ``rgb`` resized to output_size: uint8 [S, S, 3].

        The fallback for pre-cropped datasets when no face is detected; its framing
        differs from :meth:`align`'s, so callers flag such images.
        """
        check_rgb(rgb)
        height, width = rgb.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = rgb[top:top + side, left:left + side]
        interpolation = cv2.INTER_AREA if side > self.output_size else cv2.INTER_LINEAR
        return cv2.resize(square, (self.output_size, self.output_size),
                          interpolation=interpolation)
