"""MTCNN (the ``mtcnn`` package's networks and weights) with its three stages as compiled graphs.

The ``mtcnn`` 1.0 package calls its Keras networks eagerly, layer by layer (about 530
eager TensorFlow ops per detection call, plus NumPy/tensor conversions of every pyramid
level's full output map). :class:`GraphMTCNN` runs the same networks with the same
weights and the same box arithmetic, but each network call is one ``tf.function`` graph
traced once for any image size (dynamic shapes), and the graphs return only what passes
the stage's threshold:

* PNet, once per pyramid level: area-resize of the normalised batch + PNet + threshold,
  returning the (image, row, column) of each window above ``threshold_pnet`` with its
  score and box regression (a few hundred numbers instead of the full maps);
* RNet and ONet: crop-and-resize of every candidate from the normalised batch (kept as a
  tensor between stages) + the network.

Between stages the candidate boxes go through the package's own NumPy functions (box
generation, its NMS variant, squaring, refinement), so on images of one shape the
detections equal the package's ``MTCNN.detect_faces`` output with the same pyramid, but
for one thing: boxes are sorted for NMS with a stable sort, so that among boxes of equal
confidence the same one survives whether a photo is detected alone or in a batch.

Images of different shapes can share one batch: each is placed at the top-left of a
common canvas padded with the normalised value 0 (what ``crop_and_resize`` extrapolates
with), RNet/ONet crops are mapped so that they sample each image exactly where a batch
of its own shape would, and boxes are clipped to each image's own borders. Only the PNet
pyramid of a padded image differs slightly (its levels are resized as part of the canvas).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Rows returned by GraphMTCNN.detect: image index, x1, y1, x2, y2, confidence,
# 5 landmark x, 5 landmark y (the mtcnn package's "numpy" output layout).
ROW_WIDTH = 16
# PNet: stride and window of its output map in the level's pixels.
_PNET_STRIDE, _PNET_CELL = 2, 12
# The package's NMS thresholds (its defaults, which FaceAligner always used).
_NMS_PNET_LEVEL, _NMS_PNET_ALL, _NMS_RNET, _NMS_ONET = 0.5, 0.7, 0.7, 0.7
# NMS compares at most this many pairs of boxes at once (float64 temporaries of 8 MB).
_NMS_PAIRS = 1 << 20


class GraphMTCNN:
    """The ``mtcnn`` package's PNet/RNet/ONet as compiled graphs; see the module docstring.

    Args:
      thresholds: face-probability thresholds of PNet, RNet, ONet.
    """

    def __init__(self, thresholds: Sequence[float] = (0.6, 0.7, 0.7)):
        from mtcnn.stages import StageONet, StagePNet, StageRNet

        self.thresholds = tuple(float(t) for t in thresholds)
        pnet, rnet, onet = (_as_graph_function(stage().model)
                            for stage in (StagePNet, StageRNet, StageONet))
        self._pnet = _pnet_pyramid_function(pnet)
        self._rnet, self._onet = _box_functions(rnet, onet)

    def detect(self, images: Sequence[np.ndarray], pyramid: Sequence[float]) -> np.ndarray:
        """Faces in ``images`` (uint8 RGB [H, W, 3] each, shapes may differ).

        Args:
          images: the pictures, one batch.
          pyramid: PNet scales (level 0 first), shared by all images; a level maps a
            canvas side s to int(s * scale) pixels.
        Returns:
          float64 [F, 16] rows: image index, x1, y1, x2, y2 (pixels of that image),
          ONet confidence, 5 landmark x, 5 landmark y; in no particular image order.
        """
        from mtcnn.utils.bboxes import resize_to_square

        if not images or len(pyramid) == 0:
            return np.empty((0, ROW_WIDTH))
        shapes = np.array([image.shape[:2] for image in images], np.int64)
        canvas_shape = shapes.max(axis=0)
        if (shapes == canvas_shape).all():
            stacked = np.stack(images)
        else:
            stacked = np.zeros((len(images), *canvas_shape, 3), np.uint8)
            for index, image in enumerate(images):
                stacked[index, :image.shape[0], :image.shape[1]] = image
        sizes = np.stack([(canvas_shape * scale).astype(np.int32) for scale in pyramid])
        normalized, windows, scores, regression = self._pnet(
            stacked, shapes.astype(np.int32), sizes, np.float64(self.thresholds[0]))
        windows, scores, regression = windows.numpy(), scores.numpy(), regression.numpy()
        per_level = []
        for index, scale in enumerate(pyramid):
            chosen = windows[:, 0] == index
            boxes = _pnet_boxes(windows[chosen, 1:], scores[chosen], regression[chosen], scale)
            per_level.append(_nms(boxes, _NMS_PNET_LEVEL, "union"))
        boxes = np.concatenate(per_level, axis=0)
        if len(boxes) == 0:
            return np.empty((0, ROW_WIDTH))
        boxes = resize_to_square(_nms(boxes, _NMS_PNET_ALL, "union"))

        offsets, scores = self._refine(self._rnet, normalized, boxes, shapes)
        boxes = _refined(boxes, offsets, scores, self.thresholds[1])
        boxes = _nms(boxes, _NMS_RNET, "union")
        if len(boxes) == 0:
            return np.empty((0, ROW_WIDTH))
        boxes = resize_to_square(boxes)

        offsets, landmarks, scores = self._refine(self._onet, normalized, boxes, shapes)
        width = boxes[:, 3:4] - boxes[:, 1:2] + 1
        height = boxes[:, 4:5] - boxes[:, 2:3] + 1
        landmarks = landmarks.astype(np.float64)
        landmarks[:, 0:5] = width * landmarks[:, 0:5] + boxes[:, 1:2] - 1
        landmarks[:, 5:10] = height * landmarks[:, 5:10] + boxes[:, 2:3] - 1
        boxes = _refined(boxes, offsets, scores, None)
        boxes = np.concatenate([boxes, landmarks], axis=-1)
        boxes = boxes[boxes[:, 5] > self.thresholds[2]]
        return _clip_boxes(_nms(boxes, _NMS_ONET, "min"), shapes)

    def _refine(self, network, normalized, boxes: np.ndarray, shapes: np.ndarray):
        """Run RNet or ONet on the crops of ``boxes``; NumPy outputs."""
        indexes = boxes[:, 0].astype(np.int32)
        height, width = shapes[indexes, 0:1], shapes[indexes, 1:2]
        canvas_height, canvas_width = normalized.shape[1], normalized.shape[2]
        # The package divides pixel boxes by its (one) image size, so crop_and_resize
        # samples y * (H - 1) / H; keep that per image inside a larger canvas.
        y_divisor = height * (canvas_height - 1.0) / (height - 1)
        x_divisor = width * (canvas_width - 1.0) / (width - 1)
        coordinates = np.concatenate(
            [boxes[:, 2:3] / y_divisor, boxes[:, 1:2] / x_divisor,
             boxes[:, 4:5] / y_divisor, boxes[:, 3:4] / x_divisor], axis=1)
        outputs = network(normalized, coordinates.astype(np.float32), indexes)
        return [output.numpy() for output in outputs]


def _pnet_pyramid_function(pnet):
    """The compiled PNet stage: (uint8 images [N, H, W, 3] padded to one canvas, their own
    shapes [N, 2], pyramid level sizes [L, 2], threshold) -> (normalised images, windows
    [M, 4] (level, image, row, column), scores [M], regression [M, 4]), one graph for any
    image size."""
    import tensorflow as tf

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8), tf.TensorSpec([None, 2], tf.int32),
        tf.TensorSpec([None, 2], tf.int32), tf.TensorSpec([], tf.float64)])
    def pnet_pyramid(images, shapes, sizes, threshold):
        """Normalised images (padding = 0) and PNet's windows above ``threshold`` on
        every pyramid level: [M, 4] (level, image, row, column), scores [M], regression [M, 4]."""
        normalized = (tf.cast(images, tf.float32) - 127.5) / 128.0

        def without_padding():
            rows = tf.range(tf.shape(images)[1])[None, :, None]
            columns = tf.range(tf.shape(images)[2])[None, None, :]
            inside = ((rows < shapes[:, 0, None, None])
                      & (columns < shapes[:, 1, None, None]))
            return normalized * tf.cast(inside, tf.float32)[..., None]

        padded = tf.reduce_any(shapes != tf.shape(images)[None, 1:3])
        normalized = tf.cond(padded, without_padding, lambda: normalized)

        def level(index, windows, scores, regressions):
            scaled = tf.image.resize(normalized, sizes[index],
                                     method=tf.image.ResizeMethod.AREA)
            regression, probability = pnet(scaled)
            face = probability[..., 1]
            where = tf.where(tf.cast(face, tf.float64) > threshold)
            tagged = tf.concat([tf.fill([tf.shape(where)[0], 1], tf.cast(index, tf.int64)),
                                where], axis=1)
            return (index + 1, windows.write(index, tagged),
                    scores.write(index, tf.gather_nd(face, where)),
                    regressions.write(index, tf.gather_nd(regression, where)))

        count = tf.shape(sizes)[0]
        arrays = [tf.TensorArray(dtype, size=count, infer_shape=False, element_shape=shape)
                  for dtype, shape in ((tf.int64, [None, 4]), (tf.float32, [None]),
                                       (tf.float32, [None, 4]))]
        _, windows, scores, regressions = tf.while_loop(
            lambda index, *_: index < count, level, [0, *arrays])
        return normalized, windows.concat(), scores.concat(), regressions.concat()

    return pnet_pyramid


def _box_functions(rnet, onet):
    """The compiled RNet and ONet stages: (normalised images [N, H, W, 3], boxes [B, 4]
    normalised y1, x1, y2, x2, image index [B]) -> the network's outputs on the boxes'
    crops (24 px for RNet, 48 px for ONet)."""
    import tensorflow as tf

    images_spec = tf.TensorSpec([None, None, None, 3], tf.float32)

    def patches_of(images, boxes, indexes, side):
        return tf.image.crop_and_resize(images, boxes, indexes, (side, side))

    boxes_spec = [images_spec, tf.TensorSpec([None, 4], tf.float32),
                  tf.TensorSpec([None], tf.int32)]

    @tf.function(autograph=False, input_signature=boxes_spec)
    def rnet_boxes(images, boxes, indexes):
        return rnet(patches_of(images, boxes, indexes, 24))

    @tf.function(autograph=False, input_signature=boxes_spec)
    def onet_boxes(images, boxes, indexes):
        return onet(patches_of(images, boxes, indexes, 48))

    return rnet_boxes, onet_boxes


def _as_graph_function(model):
    """``model`` (one of the package's networks) as a function of its input tensor, with
    the same layers and weights but cheaper CPU kernels, equal to its call bit for bit:

    * each PReLU as ``relu(x) + alpha * min(x, 0)`` (4 elementwise passes over the
      tensor) instead of Keras' ``relu(x) - alpha * relu(-x)`` (5): the same numbers,
      since x > 0 gives x + alpha * 0 and x < 0 gives 0 + alpha * x in both;
    * each convolution as ``conv2d`` + ``bias_add``, which TensorFlow fuses into one
      kernel (Keras adds a reshaped bias as a separate op).

    On this project's CPU PNet then takes ~40 % less time, RNet ~25 %, ONet ~15 %. The
    layers after the last PReLU are the heads, each applied to its output; the others
    run in order.
    """
    import keras
    import tensorflow as tf

    layers = model.layers
    last_prelu = max(index for index, layer in enumerate(layers)
                     if isinstance(layer, keras.layers.PReLU))
    for layer in layers[:last_prelu]:
        if isinstance(layer, keras.layers.Conv2D) and (
                layer.strides != (1, 1) or layer.padding != "valid"
                or layer.activation is not keras.activations.linear):
            raise ValueError(f"{model.name}.{layer.name}: expected a stride-1 'valid' "
                             "linear convolution, as in mtcnn 1.0's networks")

    def call(inputs):
        x = inputs
        for layer in layers[:last_prelu + 1]:
            if isinstance(layer, keras.layers.Conv2D):
                x = tf.nn.bias_add(tf.nn.conv2d(x, layer.kernel, 1, "VALID"), layer.bias)
            elif isinstance(layer, keras.layers.PReLU):
                alpha = tf.reshape(layer.alpha, [-1])
                x = tf.nn.relu(x) + alpha * tf.minimum(x, 0.0)
            else:
                x = layer(x)
        return [head(x) for head in layers[last_prelu + 1:]]

    return call


def _pnet_boxes(where: np.ndarray, scores: np.ndarray, regression: np.ndarray,
                scale: float) -> np.ndarray:
    """The package's generate_bounding_box + upscale_bboxes on thresholded PNet windows.

    Returns:
      float64 [M, 6]: image index, x1, y1, x2, y2 (canvas pixels), score; in PNet's
      (image, row, column) order.
    """
    where = where.T  # [3, M]: image, row, column
    corner = where * np.asarray([[1], [_PNET_STRIDE], [_PNET_STRIDE]])
    up_left = corner + np.asarray([[0], [1], [1]])
    bottom_right = corner + np.asarray([[0], [_PNET_CELL], [_PNET_CELL]])
    width = bottom_right[2] - up_left[2]
    height = bottom_right[1] - up_left[1]
    regression = regression.T
    boxes = np.stack([
        where[0],
        up_left[2] + regression[0] * width, up_left[1] + regression[1] * height,
        bottom_right[2] + regression[2] * width, bottom_right[1] + regression[3] * height,
        scores], axis=0).T
    boxes[:, 1:5] = boxes[:, 1:5] / scale
    return boxes


def _nms(boxes: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """The package's NMS (``smart_nms_from_bboxes``) with a stable sort, for all images at once.

    Per image (column 0), boxes sorted best first (column 5) with a stable sort: a box is
    dropped when any better box of its image overlaps it by more than ``threshold``
    (``method`` "union": intersection over union; "min": over the smaller area), even
    when that better box is dropped itself, as the package does. Returns the kept rows
    grouped by ascending image, best first within each (the package's order), computed
    with the package's arithmetic: the same rows. Two differences: the package sorts with
    NumPy's unstable quicksort, so among boxes of equal confidence (PNet and ONet saturate
    at 1.0) which one survived depended on the other images' boxes in the array, and a
    photo detected in a batch could get another box than the same photo detected alone
    (up to 1.5 px on UTKFace chips); and it loops over images with ~20 NumPy calls each
    (1.5 CPU ms per 200 px chip), where this compares every (better, worse) pair of boxes
    of one image, for all images, in flat arrays of at most :data:`_NMS_PAIRS` pairs.
    """
    boxes = boxes[np.lexsort((-boxes[:, 5], boxes[:, 0]))]
    _, starts, counts = np.unique(boxes[:, 0], return_index=True, return_counts=True)
    first = np.repeat(starts, counts)  # each box's image's first (best) row
    better = np.arange(len(boxes)) - first  # how many better boxes its image has
    pairs_through = np.cumsum(better)
    corners = boxes[:, 1:5]
    area = (corners[:, 2] - corners[:, 0]) * (corners[:, 3] - corners[:, 1])
    kept = np.ones(len(boxes), bool)
    begin = 0
    while begin < len(boxes):  # rows [begin, end) of the worse box, one block of pairs
        done = pairs_through[begin - 1] if begin else 0
        end = max(begin + 1, int(np.searchsorted(pairs_through, done + _NMS_PAIRS, "right")))
        worse = np.repeat(np.arange(begin, end), better[begin:end])
        offsets = np.arange(len(worse)) - np.repeat(
            pairs_through[begin:end] - better[begin:end] - done, better[begin:end])
        overlap = _overlap(corners, area, first[worse] + offsets, worse, method)
        hits = np.bincount(worse - begin, weights=overlap > threshold, minlength=end - begin)
        kept[begin:end] = hits == 0
        begin = end
    return boxes[kept]


def _overlap(corners: np.ndarray, area: np.ndarray, one: np.ndarray, other: np.ndarray,
             method: str) -> np.ndarray:
    """float [P]: overlap of the boxes ``one`` and ``other`` (row indexes into ``corners``,
    float [N, 4] x1, y1, x2, y2, and ``area`` [N]), with the package's iou() arithmetic;
    NaN for two empty boxes (never above a threshold)."""
    low = np.maximum(corners[one, :2], corners[other, :2])
    high = np.minimum(corners[one, 2:], corners[other, 2:])
    extent = np.maximum(0, high - low)
    inter = extent[:, 0] * extent[:, 1]
    if method == "union":
        base = area[one] + area[other] - inter
    elif method == "min":
        base = np.minimum(area[one], area[other])
    else:
        raise ValueError(f"NMS method must be 'union' or 'min', got {method!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / base


def _refined(boxes: np.ndarray, offsets: np.ndarray, scores: np.ndarray,
             threshold: float | None) -> np.ndarray:
    """New confidences and regressed corners (the package's replace_confidence +
    adjust_bboxes), keeping rows above ``threshold`` when one is given."""
    boxes = boxes.copy()
    boxes[:, 5] = scores[:, -1]
    width = boxes[:, 3] - boxes[:, 1] + 1
    height = boxes[:, 4] - boxes[:, 2] + 1
    boxes[:, 1:5] += offsets * np.stack([width, height, width, height], axis=-1)
    return boxes if threshold is None else boxes[boxes[:, 5] > threshold]


def _clip_boxes(boxes: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Box corners clipped into each image (the package's limit_bboxes; landmarks kept)."""
    boxes = boxes.copy()
    height = shapes[boxes[:, 0].astype(int), 0]
    width = shapes[boxes[:, 0].astype(int), 1]
    for column, limit in ((1, width), (3, width), (2, height), (4, height)):
        boxes[:, column] = np.minimum(np.maximum(boxes[:, column], 0), limit - 1)
    return boxes
