"""Training batches made on the host with NumPy + OpenCV, for Keras on JAX or PyTorch.

The TensorFlow-free twin of :mod:`tfdldl.input_pipeline` + :mod:`tfdldl.augment`, with the
same semantics:

- each epoch e shuffles the split with the seed (seed, e); batches drop the remainder and
  the stream repeats within an epoch when ``steps_per_epoch`` asks for more than one pass;
- each face is decoded (:func:`tfdldl.image_io.decode_rgb`), resized to the input size S
  when the stored size differs (bilinear, no antialiasing, like ``tf.image.resize``), then
  augmented:
  ONE affine resampling (bilinear, zero fill) composing the horizontal flip (p = 0.5), the
  rescale by s = U(rescale_min, rescale_max) about the centre, the rotation
  U(-r, +r) degrees and the random shift (crop) of :func:`tfdldl.augment.random_transforms`;
  then colour jitter (brightness, contrast, saturation, each U(1 - j, 1 + j)), then
  grayscale with probability p, then clipping to 0..255 (jitter and grayscale are linear
  in RGB, so they run as one 3x4 colour map per image);
- targets: "distribution" (the stored Gaussian), "value" (the label), "ranking"
  ([y > l_k], :meth:`LabelSpace.ranking`), for the model outputs asked for.

Differences, on purpose: the random numbers come from NumPy (``default_rng((seed, g))``
for global batch g), not TensorFlow's stateless RNG, so the draws differ while their
distributions are the same; the geometric resampling and the colour map work on uint8
(each within 1 grey level of the float result), which quarters the bytes that travel
to the accelerator (the model casts to float32 itself). The decoded faces are the same
bit for bit: both pipelines decode with libjpeg's accurate integer IDCT (OpenCV's, and
``dct_method="INTEGER_ACCURATE"`` in :mod:`tfdldl.tf_image_io`).

Work is spread over a pool of ``spawn``-ed worker processes (all cores by default). The
encoded JPEGs sit once in shared memory; each worker decodes and augments a whole batch
straight into a slot of a shared ring buffer, and the training process copies the slot
out, so no image is pickled. Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

import collections
import math
import multiprocessing
import os
import time
from multiprocessing import shared_memory
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import cv2
import numpy as np

from tfdldl import image_io
from tfdldl.experiment import AugmentConfig
from tfdldl.label_space import LabelSpace
from tfdldl.tfrecord_reader import FaceArrays

if TYPE_CHECKING:  # tfdldl.heads imports Keras; the pipeline imports it when it runs
    from tfdldl import heads

# ITU-R BT.601 luma weights: the same constant as tfdldl.augment.LUMA, kept here so that
# this module imports no TensorFlow (a test checks the two agree).
LUMA = np.asarray((0.2989, 0.5870, 0.1140), np.float32)
# Seconds to wait for the worker pool to start, and for any one batch, before giving up
# (a worker that crashed is replaced by the pool, but its batch never arrives).
START_TIMEOUT_S = 300
BATCH_TIMEOUT_S = 600


class HostPipelineError(ValueError):
    """Data the host pipeline cannot use (undecodable JPEG, too few records, ...)."""


def decode_image(jpeg: bytes, size: int, where: str = "record") -> np.ndarray:
    """Decode an encoded face to RGB uint8 [size, size, 3] (tfdldl.image_io's rules).

    Resized with bilinear interpolation (no antialiasing, half-pixel centres, as
    ``tf.image.resize(method="bilinear")``) only when its side is not ``size``.

    Raises:
      HostPipelineError: the bytes are not a decodable image (``where`` names it).
    """
    try:
        image = image_io.decode_rgb(jpeg, where, jpeg_warnings=False)  # checked by data_prep
    except image_io.ImageReadError as error:
        raise HostPipelineError(f"{error}; rebuild the data") from None
    if image.shape[0] != size or image.shape[1] != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return image


def affine_matrix(size: int, mirror: float, scale: float, angle: float,
                  shift: Sequence[float]) -> np.ndarray:
    """The output-pixel -> input-pixel map of one augmented image, float64 [2, 3].

    The same map as one row of :func:`tfdldl.augment.random_transforms`: input = the
    mirror (x only) of R(-angle) (output - centre - shift) / scale + centre.

    Args:
      size: S, the square image side, pixels.
      mirror: -1 to flip horizontally, +1 not to.
      scale: the zoom factor s (> 1 enlarges the face).
      angle: rotation, radians.
      shift: (dx, dy) offset of the scaled image's centre, pixels.
    """
    centre = (size - 1.0) / 2.0
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    a0, a1 = mirror * cos, mirror * sin
    b0, b1 = -sin, cos
    x0, y0 = centre + shift[0], centre + shift[1]
    return np.asarray([[a0, a1, centre - a0 * x0 - a1 * y0],
                       [b0, b1, centre - b0 * x0 - b1 * y0]], np.float64)


def random_affine(rng: np.random.Generator, size: int, config: AugmentConfig) -> np.ndarray:
    """Draw one image's geometric augmentation as :func:`affine_matrix`'s [2, 3] map."""
    mirror = -1.0 if config.flip and rng.random() < 0.5 else 1.0
    low, high = (config.rescale_min, config.rescale_max) if config.rescale else (1.0, 1.0)
    scale = rng.uniform(low, high)
    limit = math.radians(config.rotation_degrees)
    angle = rng.uniform(-limit, limit)
    slack = abs(1.0 - scale) * size / 2.0 + config.translate * size
    shift = rng.uniform(-1.0, 1.0, size=2) * slack
    return affine_matrix(size, mirror, scale, angle, shift)


# Augmentations tfdldl.augment has and this pipeline does not: refused, never skipped.
TF_ONLY_AUGMENTATIONS = ("blur_probability", "downscale_probability", "jpeg_probability",
                         "noise_std", "color_cast")
# AugmentConfig.fill_mode -> OpenCV border: TF's REFLECT repeats the edge pixel (d c b a |
# a b c d), as BORDER_REFLECT does; CONSTANT fills 0.
_BORDERS = {"reflect": cv2.BORDER_REFLECT, "constant": cv2.BORDER_CONSTANT}


def warp(image: np.ndarray, matrix: np.ndarray, fill_mode: str = "constant") -> np.ndarray:
    """Resample ``image`` [S, S, C] through the output->input ``matrix`` [2, 3].

    Bilinear; outside the image mirrored ("reflect") or zero ("constant"), as
    ``ImageProjectiveTransformV3`` with that fill mode. Same dtype out as in.
    """
    size = image.shape[1], image.shape[0]
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=_BORDERS[fill_mode], borderValue=0)


def photometric_matrix(mean_rgb: np.ndarray, brightness: float, contrast: float,
                       saturation: float, gray: bool) -> np.ndarray:
    """Colour jitter, then optionally grayscale, as ONE affine colour map, float64 [3, 4].

    tfdldl.augment's steps are all linear in the RGB vector x of a pixel: brightness
    ``b x``; contrast ``c (x - m) + m`` with m the image's mean luma after brightness;
    saturation ``s x + (1 - s) 1 ℓᵀx`` with ℓ the luma weights; grayscale ``1 ℓᵀx``. So
    their composition is ``x' = M[:, :3] x + M[:, 3]``, applied in one pass by
    ``cv2.transform`` (which also clips to 0..255 and rounds, as the TF path clips; on
    uint8 it uses 10-bit fixed-point coefficients: within 1 grey level of the float map).

    Args:
      mean_rgb: float [3], the image's mean R, G, B (before brightness).
      brightness, contrast, saturation: the jitter factors (1 = unchanged).
      gray: whether the image is turned to grayscale after the jitter.
    """
    luma = LUMA.astype(np.float64)
    to_luma = np.outer(np.ones(3), luma)  # x -> (ℓᵀx, ℓᵀx, ℓᵀx)
    mean_luma = brightness * float(luma @ np.asarray(mean_rgb, np.float64))
    saturate = saturation * np.eye(3) + (1.0 - saturation) * to_luma
    linear = saturate * (contrast * brightness)
    offset = saturate @ np.full(3, (1.0 - contrast) * mean_luma)
    if gray:
        linear, offset = to_luma @ linear, to_luma @ offset
    return np.concatenate([linear, offset[:, None]], axis=1)


def augment_image(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One training image through the enabled augmentations of ``config``.

    Args:
      image: uint8 [S, S, 3] RGB.
      rng: this image's random source.
      config: which parts are on and their strengths.
    Returns:
      uint8 [S, S, 3] RGB: the geometric map (one bilinear resampling), then the colour
      map of :func:`photometric_matrix` (clipped to 0..255 and rounded).
    """
    if not config.enabled:
        return image
    if config.flip or config.rescale or config.rotation_degrees > 0 or config.translate > 0:
        image = warp(image, random_affine(rng, image.shape[0], config), config.fill_mode)
    jitter = config.color_jitter
    factors = rng.uniform(1.0 - jitter, 1.0 + jitter, size=3) if jitter > 0 else np.ones(3)
    gray = config.grayscale_probability > 0 and rng.random() < config.grayscale_probability
    if jitter > 0 or gray:
        mean_rgb = np.asarray(cv2.mean(image)[:3])
        image = cv2.transform(image, photometric_matrix(mean_rgb, *factors, gray))
    return image


def decode_all(faces: FaceArrays, size: int) -> np.ndarray:
    """Every face of ``faces`` decoded (no augmentation), uint8 [N, S, S, 3]; for evaluation."""
    images = np.empty((len(faces), size, size, 3), np.uint8)
    for i, jpeg in enumerate(faces.jpegs):
        images[i] = decode_image(jpeg, size, where=f"record {i}")
    return images


def make_targets(faces: FaceArrays, indices: np.ndarray, outputs: heads.Outputs,
                 label_space: LabelSpace) -> dict[str, np.ndarray]:
    """Targets of the records ``indices`` for the model outputs ``outputs``, made by their
    heads (:func:`tfdldl.heads.make_targets`): NumPy float32 arrays keyed by output name."""
    from tfdldl import heads

    record = {key: faces.field(key)[indices] for key in heads.record_fields(outputs)}
    return heads.make_targets(outputs, record, label_space)


def epoch_order(count: int, batch_size: int, steps: int, seed: int, epoch: int) -> np.ndarray:
    """Record indices of one training epoch, int64 [steps, batch_size].

    Permutations seeded with (seed, epoch, pass) are concatenated until ``steps`` full
    batches are filled; each pass's remainder is dropped, as ``batch(drop_remainder)``
    after ``repeat()``.
    """
    per_pass = count // batch_size
    passes = math.ceil(steps / per_pass)
    rows = [np.random.default_rng((seed, epoch, p)).permutation(count)[:per_pass * batch_size]
            for p in range(passes)]
    return np.concatenate(rows).reshape(-1, batch_size)[:steps]


# ---- worker side -------------------------------------------------------------------------

_WORKER: dict = {}


def _attach(name: str) -> shared_memory.SharedMemory:
    return shared_memory.SharedMemory(name=name)


def _init_worker(blob_name: str, offsets: np.ndarray, ring_name: str, ring_shape: tuple,
                 size: int, config: Optional[AugmentConfig]) -> None:
    """Attach a worker to the shared JPEG blob and the output ring."""
    cv2.setNumThreads(1)
    blob, ring = _attach(blob_name), _attach(ring_name)
    _WORKER.update(blob=blob, ring=ring, offsets=offsets, size=size, config=config,
                   jpegs=np.ndarray((int(offsets[-1]),), np.uint8, buffer=blob.buf),
                   out=np.ndarray(ring_shape, np.uint8, buffer=ring.buf))


def _fill_slot(slot: int, indices: np.ndarray, batch_seed: tuple) -> int:
    """Decode + augment the records ``indices`` into ring slot ``slot``; returns the slot."""
    state = _WORKER
    rng = np.random.default_rng(batch_seed)
    offsets, jpegs, out = state["offsets"], state["jpegs"], state["out"][slot]
    for row, index in enumerate(indices):
        data = jpegs[offsets[index]:offsets[index + 1]].tobytes()
        image = decode_image(data, state["size"], where=f"record {int(index)}")
        out[row] = image if state["config"] is None else augment_image(image, rng, state["config"])
    return slot


class HostBatches:
    """The training stream of one split, made by a pool of worker processes.

    Iterate :meth:`stream` for ``model.fit(..., steps_per_epoch=self.steps_per_epoch)``.
    Batch g of the run (g = epoch * steps_per_epoch + step) holds the records
    ``epoch_order(...)[step]`` augmented with ``default_rng((seed, g))``, whatever the
    number of workers, so the stream is reproducible.

    Args:
      faces: the split in memory (tfdldl.tfrecord_reader.read_split).
      batch_size: images per batch.
      outputs: the model's heads (tfdldl.heads.of_model), or its output names (their
        heads make the targets: tfdldl.heads.make_targets).
      label_space: the grid (for the ranking target).
      image_size: S, the model's input side.
      augment: augmentation; None (or ``enabled: false``) = none.
      seed: seed of shuffling and augmentation.
      steps_per_epoch: batches per epoch; None = one pass (remainder dropped).
      workers: worker processes; None = all CPU cores (``os.cpu_count()``).
      prefetch: ring slots (batches in flight); None = 2 per worker, at least 4.

    Attributes:
      wait_seconds: total time :meth:`stream` blocked waiting for a worker's batch.
    """

    def __init__(self, faces: FaceArrays, batch_size: int, outputs: heads.Outputs,
                 label_space: LabelSpace, image_size: int, augment: Optional[AugmentConfig],
                 seed: int = 0, steps_per_epoch: Optional[int] = None,
                 workers: Optional[int] = None, prefetch: Optional[int] = None):
        if len(faces) < batch_size:
            raise HostPipelineError(f"the split has {len(faces)} records, fewer than one batch "
                                    f"of {batch_size}; lower train.batch_size or build more data")
        unsupported = [f"augment.{name}" for name in TF_ONLY_AUGMENTATIONS
                       if augment is not None and augment.enabled and getattr(augment, name) > 0]
        if unsupported:
            raise HostPipelineError(
                f"{', '.join(unsupported)}: the real-photo degradations run in the TensorFlow "
                "input pipeline (tfdldl.augment) only; set them to 0 for this backend, or "
                "train with TensorFlow (python -m tfdldl.train)")
        self.faces, self.batch_size, self.label_space = faces, int(batch_size), label_space
        self.outputs = outputs
        self.image_size, self.seed = int(image_size), int(seed)
        self.augment = augment if augment is not None and augment.enabled else None
        self.steps_per_epoch = int(steps_per_epoch or len(faces) // batch_size)
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.slots = int(prefetch or max(4, 2 * self.workers))
        self.wait_seconds = 0.0
        self._pool = None
        self._memory: list[shared_memory.SharedMemory] = []

    def _start(self) -> None:
        offsets = np.zeros(len(self.faces) + 1, np.int64)
        offsets[1:] = np.cumsum([len(jpeg) for jpeg in self.faces.jpegs])
        blob = shared_memory.SharedMemory(create=True, size=max(1, int(offsets[-1])))
        self._memory.append(blob)
        np.ndarray((int(offsets[-1]),), np.uint8, buffer=blob.buf)[:] = np.frombuffer(
            b"".join(self.faces.jpegs), np.uint8)
        shape = (self.slots, self.batch_size, self.image_size, self.image_size, 3)
        ring = shared_memory.SharedMemory(create=True, size=int(np.prod(shape)))
        self._memory.append(ring)
        self._ring = np.ndarray(shape, np.uint8, buffer=ring.buf)
        context = multiprocessing.get_context("spawn")
        self._pool = context.Pool(self.workers, initializer=_init_worker,
                                  initargs=(blob.name, offsets, ring.name, shape,
                                            self.image_size, self.augment))
        self._result(self._pool.apply_async(os.getpid), START_TIMEOUT_S, "start")

    @staticmethod
    def _result(pending, timeout: float, what: str):
        try:
            return pending.get(timeout)
        except multiprocessing.TimeoutError:
            raise HostPipelineError(f"the host-pipeline workers did not {what} within "
                                    f"{timeout} s; a worker probably crashed (see the messages "
                                    "above), or the machine is overloaded") from None

    def stream(self, first_epoch: int = 0, epochs: int = 1
               ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Batches of epochs [first_epoch, epochs): (images uint8 [B, S, S, 3], targets).

        Raises:
          HostPipelineError: a worker could not decode a record.
        """
        if self._pool is None:
            self._start()
        tasks = ((epoch, step, rows)
                 for epoch in range(first_epoch, epochs)
                 for step, rows in enumerate(epoch_order(len(self.faces), self.batch_size,
                                                         self.steps_per_epoch, self.seed, epoch)))
        pending: collections.deque = collections.deque()
        free = list(range(self.slots))

        def submit() -> None:
            task = next(tasks, None)
            if task is not None:
                epoch, step, rows = task
                slot = free.pop()
                batch_seed = (self.seed, epoch * self.steps_per_epoch + step)
                pending.append((rows, self._pool.apply_async(_fill_slot, (slot, rows, batch_seed))))

        for _ in range(self.slots):
            submit()
        while pending:
            rows, result = pending.popleft()
            started = time.perf_counter()
            slot = self._result(result, BATCH_TIMEOUT_S, "deliver a batch")
            self.wait_seconds += time.perf_counter() - started
            images = self._ring[slot].copy()
            free.append(slot)
            submit()
            yield images, make_targets(self.faces, rows, self.outputs, self.label_space)

    def close(self) -> None:
        """Stop the workers and free the shared memory (also done at garbage collection)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        self._ring = None
        while self._memory:
            memory = self._memory.pop()
            memory.close()
            memory.unlink()

    def __enter__(self) -> "HostBatches":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to free
            pass
