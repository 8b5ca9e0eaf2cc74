"""Face detection (MTCNN) and 5-point similarity alignment, shared by training data and prediction.

Training faces (data_prep.build) and faces given to a trained model (tfdldl.predict) pass
through this one module with the same template, so the model never sees a framing at
inference that it did not see in training.

Detector: MTCNN from the ``mtcnn`` package (weights ship with it; runs offline), with the
DLDL-v2 settings: minimum face 20 px, stage thresholds 0.6 / 0.7 / 0.7 (PNet, RNet, ONet),
pyramid factor 0.709. Among several faces the most confident wins; confidences equal to
three decimals count as a tie, broken by the distance of the box centre to the image
centre (the photographed person is usually in the middle).

Template: the widely used 5-point ArcFace template for a 112 px crop (eye centres,
nose tip, mouth corners), shrunk by :data:`TEMPLATE_SHRINK` = 0.80 about the crop centre
and scaled to ``output_size``. The ArcFace crop is made for face recognition and cuts the
forehead above the brows and the chin; age lives there too (forehead wrinkles, hairline,
grey hair, jowls). Shrinking by 0.80 widens the field of view 1.25x: the eyes sit at 47 %
of the crop's height and the mouth at 76 %, so the hairline (about 1.2 eye-to-mouth
distances above the eyes) and the chin (about 0.6 below the mouth) are inside with some
room to spare, while the face still fills most of the crop (eye distance 25 % of the
side), which keeps resolution for wrinkles at 112-128 px inputs.

Pre-cropped sources: UTKFace's own crops end just above the brows, so in its aligned
faces the top ~25 % and thin side bands lie outside the source photo and are black
(``cv2.BORDER_CONSTANT``). Full photos at inference have hair there instead; a model
trained only on UTKFace sees that difference.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import numpy as np

# ArcFace's 5-point template in a 112x112 crop: left eye, right eye, nose tip, left and
# right mouth corner, (x, y) pixels; "left" is the image's left.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
TEMPLATE_SHRINK = 0.80
# PNet looks at 12x12 windows; pyramid levels smaller than this find nothing.
PNET_WINDOW = 12
# Confidences equal to this many decimals are a tie, broken by centrality.
_CONFIDENCE_DECIMALS = 3
# Images of one shape are detected together in batches of this many.
DETECTION_BATCH = 32


def template(output_size: int) -> np.ndarray:
    """The 5 target landmark positions in an ``output_size`` square crop, float32 [5, 2] (x, y) px."""
    centre = 56.0
    shrunk = centre + (ARCFACE_TEMPLATE_112 - centre) * TEMPLATE_SHRINK
    return (shrunk * (output_size / 112.0)).astype(np.float32)


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
class Detection:
    """One face found by MTCNN, in the coordinates of the image given to the detector.

    Attributes:
      box: (x, y, width, height), pixels.
      confidence: ONet's face probability, 0..1.
      landmarks: float32 [5, 2] (x, y): left eye, right eye, nose, left and right mouth
        corner ("left" is the image's left).
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray


@dataclasses.dataclass(frozen=True)
class AlignedFace:
    """A detected face warped onto the template.

    Attributes:
      image: uint8 [S, S, 3] RGB, S = the aligner's output_size.
      box: (x, y, width, height) of the detection in the input image, pixels.
      confidence: the detector's face probability, 0..1.
      landmarks: float32 [5, 2] detected landmarks in the input image, pixels.
    """

    image: np.ndarray
    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray


class FaceAligner:
    """Detects faces with MTCNN and aligns them onto :func:`template`.

    Args:
      output_size: side of the aligned square crop, pixels.
      min_face_size: smallest face to look for, pixels of the input image. Larger values
        skip the fine pyramid levels: much faster when faces are known to be big (a
        pre-cropped dataset).
      thresholds: face-probability thresholds of PNet, RNet, ONet.
      scale_factor: ratio between image-pyramid levels.
      max_side: images whose longer side exceeds this are downscaled before detection
        (landmarks are mapped back; the crop is cut from the full-resolution image).
        Faces smaller than 12 px in the downscaled copy are not found.
    """

    def __init__(self, output_size: int = 224, min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), scale_factor: float = 0.709,
                 max_side: int = 1024):
        if output_size < 16:
            raise ValueError(f"output_size must be at least 16 px, got {output_size}")
        if not 0 < scale_factor < 1:
            raise ValueError(f"scale_factor must lie in (0, 1), got {scale_factor}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds needs 3 values (PNet, RNet, ONet), got {thresholds}")
        self.output_size = int(output_size)
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.max_side = int(max_side)
        self._template = template(self.output_size)
        self._mtcnn = None

    # -- detection ---------------------------------------------------------------------

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in one uint8 RGB [H, W, 3] image, best first (see the module docstring)."""
        return self.detect_batch([rgb])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each of ``images`` (uint8 RGB [H, W, 3]); one best-first list per image.

        Images of the same shape go through MTCNN together, which is several times
        faster per image than one call each. Only same-shaped images are batched: mtcnn
        1.0 pads mixed shapes and then pairs padding offsets with the images that have a
        detection, which misplaces boxes when an image in the batch has none.
        """
        results: list[list[Detection]] = [[] for _ in images]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            _check_rgb(image)
            by_shape.setdefault(image.shape, []).append(index)
        for shape, indexes in by_shape.items():
            ratio = min(1.0, self.max_side / max(shape[0], shape[1]))
            for start in range(0, len(indexes), DETECTION_BATCH):
                chunk = indexes[start:start + DETECTION_BATCH]
                batch = [_shrink(images[i], ratio) for i in chunk]
                for i, faces in zip(chunk, self._run_mtcnn(batch, ratio)):
                    results[i] = _rank(faces, images[i].shape)
        return results

    def _run_mtcnn(self, batch: list[np.ndarray], ratio: float) -> list[list[Detection]]:
        """MTCNN on same-shaped images; coordinates divided by ``ratio`` (back to full size)."""
        height, width = batch[0].shape[:2]
        # Upsampling the copy beyond PNet's window finds nothing the full image would not.
        min_face = max(float(PNET_WINDOW), self.min_face_size * ratio)
        pyramid = pyramid_scales(min(height, width), min_face, self.scale_factor)
        if len(pyramid) == 0:  # the images are smaller than the minimum face
            return [[] for _ in batch]
        rows = self._detector().detect_faces(
            list(batch), box_format="xyxy", output_type="numpy", threshold_pnet=self.thresholds[0], threshold_rnet=self.thresholds[1],
            threshold_onet=self.thresholds[2], pyramid=pyramid)
        faces: list[list[Detection]] = [[] for _ in batch]
        for row in np.asarray(rows, np.float64).reshape(-1, 16):
            x1, y1, x2, y2 = row[1:5] / ratio
            landmarks = np.stack([row[6:11], row[11:16]], axis=1) / ratio
            faces[int(row[0])].append(Detection(
                box=(float(x1), float(y1), float(x2 - x1), float(y2 - y1)),
                confidence=float(row[5]), landmarks=landmarks.astype(np.float32)))
        return faces

    def _detector(self):
        if self._mtcnn is None:
            from mtcnn import MTCNN
            from mtcnn.stages import StageONet, StageRNet

            self._mtcnn = MTCNN(stages=[_pyramid_pnet_class(), StageRNet, StageONet])
        return self._mtcnn

    # -- alignment ---------------------------------------------------------------------

    def align(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Warp ``rgb`` so that ``landmarks`` land on the template.

        Args:
          rgb: uint8 [H, W, 3] RGB.
          landmarks: float [5, 2] (x, y) in ``rgb``'s pixels, in the order of
            :class:`Detection`.
        Returns:
          uint8 [S, S, 3] RGB, S = output_size; outside the photo is black.
        """
        _check_rgb(rgb)
        landmarks = np.asarray(landmarks, np.float64).reshape(5, 2)
        matrix = similarity_transform(landmarks, self._template)
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        if scale < 0.5:
            # Shrinking a lot with bilinear sampling aliases; pre-shrink with area averaging.
            shrink = 2.0 * scale
            rgb = cv2.resize(rgb, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            matrix = matrix @ np.diag([1.0 / shrink, 1.0 / shrink, 1.0])
        return cv2.warpAffine(rgb, matrix, (self.output_size, self.output_size),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(0, 0, 0))

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
                            face.landmarks)
                for face in faces[:max_faces]
            ])
        return aligned

    def center_crop(self, rgb: np.ndarray) -> np.ndarray:
        """The largest central square of ``rgb`` resized to output_size: uint8 [S, S, 3].

        The fallback for pre-cropped datasets when no face is detected; its framing
        differs from :meth:`align`'s, so callers flag such images.
        """
        _check_rgb(rgb)
        height, width = rgb.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = rgb[top:top + side, left:left + side]
        interpolation = cv2.INTER_AREA if side > self.output_size else cv2.INTER_LINEAR
        return cv2.resize(square, (self.output_size, self.output_size),
                          interpolation=interpolation)


def pyramid_scales(min_side: float, min_face_size: float, scale_factor: float) -> np.ndarray:
    """Image-pyramid scales for MTCNN's PNet, float64 [L].

    Level 0 maps a ``min_face_size`` face onto PNet's 12 px window; each next level is
    ``scale_factor`` smaller; levels stop while the image's shorter side still covers
    12 px. (mtcnn 1.0 counts levels from the image size alone, so with a large minimum
    face its last levels fall below 12 px, PNet fails and a whole batch reports no face.)
    """
    scales = []
    scale = PNET_WINDOW / float(min_face_size)
    while min_side * scale >= PNET_WINDOW:
        scales.append(scale)
        scale *= scale_factor
    return np.asarray(scales, np.float64)


def _rank(faces: list[Detection], shape: tuple[int, ...]) -> list[Detection]:
    """Most confident first; ties (to 3 decimals) go to the face nearest the image centre."""
    centre_y, centre_x = shape[0] / 2.0, shape[1] / 2.0

    def key(face: Detection):
        x, y, w, h = face.box
        distance = np.hypot(x + w / 2 - centre_x, y + h / 2 - centre_y)
        return (-round(face.confidence, _CONFIDENCE_DECIMALS), distance)

    return sorted(faces, key=key)


def _shrink(rgb: np.ndarray, ratio: float) -> np.ndarray:
    if ratio >= 1.0:
        return rgb
    size = (max(1, round(rgb.shape[1] * ratio)), max(1, round(rgb.shape[0] * ratio)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _check_rgb(rgb: np.ndarray) -> None:
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3
            and rgb.shape[2] == 3):
        got = (f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray)
               else type(rgb).__name__)
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {got}; "
                         "read images with tfdldl.image_io.read_rgb")


def _pyramid_pnet_class():
    """StagePNet running an explicit pyramid (see :func:`pyramid_scales`); defined on
    first use so that importing this module does not import TensorFlow."""
    from mtcnn.stages import StagePNet
    from mtcnn.utils.bboxes import (generate_bounding_box, resize_to_square,
                                    smart_nms_from_bboxes, upscale_bboxes)
    from mtcnn.utils.images import scale_images

    class PyramidPNet(StagePNet):
        def __call__(self, images_normalized, images_oshapes, pyramid, threshold_pnet=0.6,
                     nms_pnet1=0.5, nms_pnet2=0.7, **kwargs):
            batch_size = images_normalized.shape[0]
            per_scale = []
            for scale in pyramid:
                regression, probability = self._model(scale_images(images_normalized, scale))
                boxes = generate_bounding_box(regression, probability, threshold_pnet)
                boxes = upscale_bboxes(boxes, np.full(batch_size, scale))
                per_scale.append(smart_nms_from_bboxes(
                    boxes, threshold=nms_pnet1, method="union", initial_sort=False))
            boxes = np.concatenate(per_scale, axis=0) if per_scale else np.empty((0, 6))
            boxes = smart_nms_from_bboxes(boxes, threshold=nms_pnet2, method="union",
                                          initial_sort=True)
            return resize_to_square(boxes)

    return PyramidPNet

