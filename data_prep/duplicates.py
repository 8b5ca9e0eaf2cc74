"""Byte-identical and near-identical images, grouped so that splits can keep them together.

Each image gets
  * the SHA-256 of its file bytes (exact copies, even of files that cannot be decoded);
  * a 256-bit difference hash (dHash): the signs of horizontal gradients of a 17x16
    grayscale thumbnail, for the image and for its mirror image (training flips faces,
    so a mirrored copy leaks as much as a plain one);
  * a 32x32 grayscale thumbnail, centred and scaled to unit norm, for a correlation check.

Two images are near-identical when the Hamming distance between their hashes (plain or
mirrored) is at most ``near_threshold`` bits, or at most 1.5x that with a thumbnail
correlation of at least ``CORRELATION`` (re-coloured, watermarked or slightly re-cropped
copies move the hash more but keep the pixels correlated). Matches are joined by
union-find into groups.

Measured on the 20,152 UTKFace crops of ../shared (see benchmarks/bench_duplicates.py):
same-photo pairs lie at 0..~24 bits and correlate >= ~0.98; different people start at
~22-26 bits and correlate <= ~0.95, hence the default of 20 bits. Thumbnails of similar
but different faces can correlate above 0.95 on their own, which is why correlation only
widens the hash threshold and never replaces it.

Matching compares every pair exactly, as a blocked matrix product of ±1 hash vectors
(Hamming = (256 - a·b) / 2): O(n²) work but BLAS-fast, a few seconds for 20k images on
2 cores and no missed pairs, which bucketed LSH would trade for speed only at far larger n.
"""

from __future__ import annotations

import collections
import hashlib
import multiprocessing
import time
from typing import Any, Iterable, Optional, Sequence

import cv2
import numpy as np

from data_prep.adapters.base import Record
from tfdldl.image_io import ImageReadError, check_size

HASH_BITS = 256
_HASH_W, _HASH_H = 16, 16  # gradient grid: (W + 1) x H thumbnail -> W x H bits
THUMB = 32
CORRELATION = 0.95
WIDE_FACTOR = 1.5
DEFAULT_NEAR_THRESHOLD = 20
_BLOCK = 1024


class Fingerprints:
    """What matching needs of n images, as arrays.

    Attributes:
      sha256: n hex digests of the file bytes ("" for a file that cannot be read).
      readable: bool [n], False where the image could not be decoded (hash-free).
      signs: float32 [n, 256], dHash bits as ±1 (0 where unreadable).
      mirror_signs: float32 [n, 256], the dHash of the mirrored image, as ±1.
      thumbs: float32 [n, 1024], centred unit-norm 32x32 thumbnails (0 where unreadable
        or flat).
      mirror_thumbs: float32 [n, 1024], the same of the mirrored image.
    """

    def __init__(self, items: Sequence[tuple[str, Optional[tuple[np.ndarray, np.ndarray]]]]):
        n = len(items)
        self.sha256 = [sha for sha, _ in items]
        self.readable = np.array([small is not None for _, small in items], dtype=bool)
        self.signs = np.zeros((n, HASH_BITS), np.float32)
        self.mirror_signs = np.zeros((n, HASH_BITS), np.float32)
        self.thumbs = np.zeros((n, THUMB * THUMB), np.float32)
        self.mirror_thumbs = np.zeros((n, THUMB * THUMB), np.float32)
        for i, (_, small) in enumerate(items):
            if small is not None:
                hash_thumb, thumb = small
                self.signs[i] = _signs(hash_thumb)
                self.mirror_signs[i] = _signs(hash_thumb[:, ::-1])
                self.thumbs[i] = _unit(thumb)
                self.mirror_thumbs[i] = _unit(thumb[:, ::-1])


def read_thumbnails(path: str) -> tuple[str, Optional[tuple[np.ndarray, np.ndarray]]]:
    """SHA-256 hex of the file bytes, and grayscale thumbnails uint8 ([16, 17], [32, 32]).

    The thumbnails are None for a file OpenCV cannot decode, and the digest is "" for a
    file that cannot be read at all; the build reports such files later with their precise
    reason (tfdldl.image_io), so this function never raises for a bad file.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return "", None
    content = data.tobytes()
    sha = hashlib.sha256(content).hexdigest()
    try:
        check_size(content, path)  # a decompression bomb is refused before it is decoded
        gray = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_2)
    except (ImageReadError, cv2.error):
        return sha, None
    if gray is None:
        return sha, None
    hash_thumb = cv2.resize(gray, (_HASH_W + 1, _HASH_H), interpolation=cv2.INTER_AREA)
    return sha, (hash_thumb, cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA))


def _signs(hash_thumb: np.ndarray) -> np.ndarray:
    """dHash of a [16, 17] thumbnail: ±1 float32 [256] (+1 where brightness rises)."""
    values = hash_thumb.astype(np.int16)
    return np.where(values[:, 1:] > values[:, :-1], 1.0, -1.0).astype(np.float32).ravel()


def _unit(thumb: np.ndarray) -> np.ndarray:
    """A thumbnail centred and scaled to unit norm, float32 [1024] (zeros when flat)."""
    values = thumb.astype(np.float32).ravel()
    values -= values.mean()
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 1e-3 else np.zeros_like(values)


def fingerprint(paths: Sequence[str], workers: int = 1) -> Fingerprints:
    """Fingerprints of ``paths`` (in order), read by ``workers`` processes (1: in-process)."""
    if workers > 1 and len(paths) > 256:
        context = multiprocessing.get_context("spawn")  # no fork of a TF-threaded parent
        with context.Pool(workers) as pool:
            items = pool.map(read_thumbnails, paths, chunksize=256)
    else:
        items = [read_thumbnails(path) for path in paths]
    return Fingerprints(items)


def near_pairs(prints: Fingerprints, near_threshold: int) -> list[tuple[int, int]]:
    """Index pairs (i < j) of near-identical readable images (see the module docstring).

    Args:
      prints: the images' fingerprints.
      near_threshold: the largest Hamming distance, in bits of the 256-bit dHash, at which
        two images match on the hash alone.
    """
    wide = int(np.floor(near_threshold * WIDE_FACTOR))
    index = np.flatnonzero(prints.readable)
    signs, mirror = prints.signs[index], prints.mirror_signs[index]
    pairs = []
    for start in range(0, len(index), _BLOCK):
        block = signs[start:start + _BLOCK]
        dots = block @ signs[start:].T  # a·b = 256 - 2·Hamming(a, b)
        np.maximum(dots, block @ mirror[start:].T, out=dots)
        rows, cols = np.nonzero(dots >= HASH_BITS - 2 * wide)
        keep = cols > rows  # within the block's own square: each pair once, no self pairs
        for row, col in zip(rows[keep], cols[keep]):
            i, j = int(index[start + row]), int(index[start + col])
            distance = (HASH_BITS - dots[row, col]) / 2
            if distance <= near_threshold or _correlation(prints, i, j) >= CORRELATION:
                pairs.append((i, j))
    return pairs


def _correlation(prints: Fingerprints, i: int, j: int) -> float:
    """Thumbnail correlation of images i and j, the better of plain and mirrored."""
    thumb = prints.thumbs[i]
    return float(max(thumb @ prints.thumbs[j], thumb @ prints.mirror_thumbs[j]))


def exact_pairs(prints: Fingerprints) -> list[tuple[int, int]]:
    """Index pairs joining images with identical file bytes (first copy to each other)."""
    first: dict[str, int] = {}
    pairs = []
    for i, sha in enumerate(prints.sha256):
        if not sha:
            continue
        if sha in first:
            pairs.append((first[sha], i))
        else:
            first[sha] = i
    return pairs


def connected_groups(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Union-find over ``pairs`` of indices < n: groups of 2+ members, sorted, in order."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    members: dict[int, list[int]] = collections.defaultdict(list)
    for i in range(n):
        members[find(i)].append(i)
    return sorted((group for group in members.values() if len(group) > 1), key=min)


def find_groups(records: Sequence[Record], near_threshold: int = DEFAULT_NEAR_THRESHOLD,
                workers: int = 1) -> tuple[list[list[str]], dict[str, Any]]:
    """Duplicate groups of ``records`` and a JSON-ready report of them.

    Args:
      records: the images (their ``path``) and labels.
      near_threshold: bits of the 256-bit dHash, see :func:`near_pairs`; 0 matches only
        identical files and identical-looking images.
      workers: processes reading and hashing the files.
    Returns:
      (groups, report): groups are lists of 2+ paths (in records' order) that must share a
      split; report holds the counts, every group, and the conflicts: groups whose
      members carry different labels, with the labels.
    """
    start = time.monotonic()
    paths = [record.path for record in records]
    prints = fingerprint(paths, workers)
    hashed = time.monotonic()
    exact = exact_pairs(prints)
    near = near_pairs(prints, near_threshold)
    groups = connected_groups(len(paths), exact + near)
    conflicts = []
    for group in groups:
        labels = [float(records[i].label) for i in group]
        if len(set(labels)) > 1:
            conflicts.append({"paths": [paths[i] for i in group], "labels": labels})
    report = {
        "method": (f"SHA-256 of file bytes; 256-bit dHash (plain and mirrored) within "
                   f"{near_threshold} bits, or within {int(near_threshold * WIDE_FACTOR)} "
                   f"bits at thumbnail correlation >= {CORRELATION}"),
        "near_threshold": near_threshold,
        "images": len(paths),
        "undecodable": int((~prints.readable).sum()),
        "exact_groups": len(connected_groups(len(paths), exact)),
        "groups": len(groups),
        "images_in_groups": sum(len(group) for group in groups),
        "largest_group": max((len(group) for group in groups), default=0),
        "conflicting_groups": len(conflicts),
        "conflicts": conflicts,
        "group_paths": [[paths[i] for i in group] for group in groups],
        "seconds_reading": round(hashed - start, 2),
        "seconds": round(time.monotonic() - start, 2),
    }
    return [[paths[i] for i in group] for group in groups], report
