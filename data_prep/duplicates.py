"""Byte-identical and near-identical images, grouped so that splits can keep them together.

Each image gets
  * the SHA-256 of its file bytes (exact copies, even of files that cannot be decoded);
  * a 256-bit difference hash (dHash): the signs of horizontal gradients of a 17x16
    grayscale thumbnail, for the image and for its mirror image (training flips faces,
    so a mirrored copy leaks as much as a plain one);
  * a 32x32 grayscale thumbnail, centred and scaled to unit norm, for a correlation check.

Two images i < j are near-identical when D, the Hamming distance between the dHash of i
and the plain or the mirrored dHash of j (the smaller), is at most ``near_threshold``
bits, or at most ``wide = floor(1.5 * near_threshold)`` bits with a thumbnail correlation
of at least ``CORRELATION`` (re-coloured, watermarked or slightly re-cropped copies move
the hash more but keep the pixels correlated). Matches are joined by union-find into
groups.

Measured on the 20,152 UTKFace crops of ../shared (see benchmarks/bench_duplicates.py):
same-photo pairs lie at 0..~24 bits and correlate >= ~0.98; different people start at
~22-26 bits and correlate <= ~0.95, hence the default of 20 bits. Thumbnails of similar
but different faces can correlate above 0.95 on their own, which is why correlation only
widens the hash threshold and never replaces it.

Finding the pairs (:func:`near_pairs`) without comparing all n²/2 of them: candidate
pairs come from hash bands chosen from the images' hash statistics
(data_prep.hash_bands: by the pigeonhole principle no pair within ``wide`` bits can be
missed) and are verified exactly (data_prep.band_join). The Beam pipeline
(data_prep.beam_pipeline) meets the same bands' values and probes through
``GroupByKey``; :func:`near_pairs_dense` is the former all-pairs matcher (a blocked
matrix product), kept as the reference the benchmark and tests compare with.
"""

from __future__ import annotations

import collections
import hashlib
import multiprocessing
import time
from typing import Any, Iterable, Optional, Sequence

import cv2
import numpy as np

from data_prep import band_join, hash_bands
from data_prep.adapters.base import Record
from tfdldl.image_io import ImageReadError, check_size

HASH_BITS = 256
HASH_BYTES = HASH_BITS // 8
_HASH_W, _HASH_H = 16, 16  # gradient grid: (W + 1) x H thumbnail -> W x H bits
THUMB = 32
CORRELATION = 0.95
WIDE_FACTOR = 1.5
DEFAULT_NEAR_THRESHOLD = 20
_BLOCK = 1024


class Fingerprints:
    """What matching needs of n images, as compact arrays (about 1.1 KB per image).

    Attributes:
      sha256: n hex digests of the file bytes ("" for a file that cannot be read).
      readable: bool [n], False where the image could not be decoded (hash-free).
      bits: uint8 [n, 32], the dHash packed by np.packbits (a set bit: brightness rises
        to the right), zeros where unreadable.
      mirror_bits: uint8 [n, 32], the dHash of the mirrored image.
      thumbs: uint8 [n, 32, 32], the grayscale thumbnails (zeros where unreadable).
    """

    def __init__(self, sha256: Sequence[str], readable: np.ndarray, bits: np.ndarray,
                 mirror_bits: np.ndarray, thumbs: np.ndarray):
        self.sha256 = list(sha256)
        self.readable = np.asarray(readable, bool)
        self.bits, self.mirror_bits = bits, mirror_bits
        self.thumbs = thumbs
        if not len(self.sha256) == len(self.readable) == len(bits) == len(mirror_bits) \
                == len(thumbs):
            raise ValueError("Fingerprints: sha256, readable, bits, mirror_bits and thumbs "
                             "must have one entry per image")

    @classmethod
    def from_thumbnails(cls, items: Sequence[tuple[str, Optional[tuple[np.ndarray, np.ndarray]]]]
                        ) -> "Fingerprints":
        """From :func:`read_thumbnails` results, one per image, in order."""
        n = len(items)
        readable = np.array([small is not None for _, small in items], dtype=bool)
        hash_thumbs = np.zeros((n, _HASH_H, _HASH_W + 1), np.uint8)
        thumbs = np.zeros((n, THUMB, THUMB), np.uint8)
        for i, (_, small) in enumerate(items):
            if small is not None:
                hash_thumbs[i], thumbs[i] = small
        bits, mirror_bits = dhash_bits(hash_thumbs), dhash_bits(hash_thumbs[:, :, ::-1])
        bits[~readable] = 0
        mirror_bits[~readable] = 0
        return cls([sha for sha, _ in items], readable, bits, mirror_bits, thumbs)

    def __len__(self) -> int:
        return len(self.sha256)


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


def dhash_bits(hash_thumbs: np.ndarray) -> np.ndarray:
    """dHash of uint8 thumbnails [n, 16, 17]: packed bits uint8 [n, 32] (set: rises)."""
    values = hash_thumbs.astype(np.int16)
    rises = values[:, :, 1:] > values[:, :, :-1]
    return np.packbits(rises.reshape(len(values), HASH_BITS), axis=1)


def hamming(bits_a: np.ndarray, bits_b: np.ndarray) -> np.ndarray:
    """Hamming distances between packed hashes uint8 [..., 32] (broadcast): int [...]."""
    return np.bitwise_count(np.bitwise_xor(bits_a, bits_b)).sum(axis=-1, dtype=np.int32)


def _unit(thumb: np.ndarray) -> np.ndarray:
    """A thumbnail centred and scaled to unit norm, float32 [1024] (zeros when flat)."""
    values = thumb.astype(np.float32).ravel()
    values -= values.mean()
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 1e-3 else np.zeros_like(values)


def thumbnail_correlation(thumb_a: np.ndarray, thumb_b: np.ndarray) -> float:
    """Correlation of uint8 thumbnails [32, 32]: the better of b plain and b mirrored."""
    unit = _unit(thumb_a)
    return float(max(unit @ _unit(thumb_b), unit @ _unit(thumb_b[:, ::-1])))


def wide_threshold(near_threshold: int) -> int:
    """The hash distance up to which correlation can still make a match, bits."""
    return int(np.floor(near_threshold * WIDE_FACTOR))


def verdicts(distances: np.ndarray, near_threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """(match, needs_thumbnails) bool masks for hash distances D of candidate pairs:
    D <= near_threshold matches; near_threshold < D <= wide needs the correlation check."""
    distances = np.asarray(distances)
    return (distances <= near_threshold,
            (distances > near_threshold) & (distances <= wide_threshold(near_threshold)))


def fingerprint(paths: Sequence[str], workers: int = 1) -> Fingerprints:
    """Fingerprints of ``paths`` (in order), read by ``workers`` processes (1: in-process)."""
    if workers > 1 and len(paths) > 256:
        context = multiprocessing.get_context("spawn")  # no fork of a TF-threaded parent
        with context.Pool(workers) as pool:
            items = pool.map(read_thumbnails, paths, chunksize=256)
    else:
        items = [read_thumbnails(path) for path in paths]
    return Fingerprints.from_thumbnails(items)


def plan_for(bits: np.ndarray, mirror_bits: np.ndarray, near_threshold: int
             ) -> hash_bands.BandPlan:
    """The band plan for these readable images' packed hashes uint8 [n, 32] (plain and
    mirrored), from their statistics."""
    return hash_bands.plan_bands(wide_threshold(near_threshold), len(bits),
                                 hash_bands.HashStats.of(bits, mirror_bits))


def near_pairs(prints: Fingerprints, near_threshold: int,
               plan: Optional[hash_bands.BandPlan] = None) -> list[tuple[int, int]]:
    """Index pairs (i < j, sorted) of near-identical readable images (module docstring).

    Args:
      prints: the images' fingerprints.
      near_threshold: the largest Hamming distance, in bits of the 256-bit dHash, at which
        two images match on the hash alone.
      plan: the hash bands (default: :func:`plan_for` these images).
    """
    radius = wide_threshold(near_threshold)
    index = np.flatnonzero(prints.readable)
    bits, mirror = prints.bits[index], prints.mirror_bits[index]
    plan = plan or plan_for(bits, mirror, near_threshold)
    if plan.radius < radius:
        raise ValueError(f"the band plan covers {plan.radius} bits, the rule needs {radius}")
    codes = band_join.close_pairs(bits, mirror, plan)
    rows, cols = codes // max(len(index), 1), codes % max(len(index), 1)
    distance = np.minimum(hamming(bits[rows], bits[cols]), hamming(bits[rows], mirror[cols]))
    low, high = index[rows], index[cols]
    match, check = verdicts(distance, near_threshold)
    for k in np.flatnonzero(check):
        match[k] = thumbnail_correlation(prints.thumbs[low[k]],
                                         prints.thumbs[high[k]]) >= CORRELATION
    return [(int(i), int(j)) for i, j in zip(low[match], high[match])]


def near_pairs_dense(prints: Fingerprints, near_threshold: int) -> list[tuple[int, int]]:
    """The same pairs as :func:`near_pairs`, by comparing every pair: O(n²) time and
    blocks of 1024 x n float32 dot products. The reference for tests and benchmarks."""
    wide = wide_threshold(near_threshold)
    index = np.flatnonzero(prints.readable)
    signs = np.unpackbits(prints.bits[index], axis=1).astype(np.float32) * 2 - 1
    mirror = np.unpackbits(prints.mirror_bits[index], axis=1).astype(np.float32) * 2 - 1
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
            if distance <= near_threshold or thumbnail_correlation(
                    prints.thumbs[i], prints.thumbs[j]) >= CORRELATION:
                pairs.append((i, j))
    return sorted(pairs)


# -- groups -------------------------------------------------------------------------------


def exact_pairs(sha256: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs joining images with identical file bytes (first copy to each other)."""
    first: dict[str, int] = {}
    pairs = []
    for i, sha in enumerate(sha256):
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


def group_report(records: Sequence[Record], exact: Sequence[tuple[int, int]],
                 near: Sequence[tuple[int, int]], undecodable: int, near_threshold: int,
                 plan: hash_bands.BandPlan) -> tuple[list[list[str]], dict[str, Any]]:
    """Duplicate groups (lists of 2+ paths, in records' order) and their JSON-ready report,
    from the pairs; shared by the local build and the Beam pipeline."""
    paths = [record.path for record in records]
    groups = connected_groups(len(paths), list(exact) + list(near))
    conflicts = []
    for group in groups:
        labels = [float(records[i].label) for i in group]
        if len(set(labels)) > 1:
            conflicts.append({"paths": [paths[i] for i in group], "labels": labels})
    report = {
        "method": (f"SHA-256 of file bytes; 256-bit dHash (plain and mirrored) within "
                   f"{near_threshold} bits, or within {wide_threshold(near_threshold)} "
                   f"bits at thumbnail correlation >= {CORRELATION}"),
        "candidates": plan.describe(),
        "near_threshold": near_threshold,
        "images": len(paths),
        "undecodable": int(undecodable),
        "exact_groups": len(connected_groups(len(paths), exact)),
        "groups": len(groups),
        "images_in_groups": sum(len(group) for group in groups),
        "largest_group": max((len(group) for group in groups), default=0),
        "conflicting_groups": len(conflicts),
        "conflicts": conflicts,
        "group_paths": [[paths[i] for i in group] for group in groups],
    }
    return [[paths[i] for i in group] for group in groups], report


def find_groups(records: Sequence[Record], near_threshold: int = DEFAULT_NEAR_THRESHOLD,
                workers: int = 1) -> tuple[list[list[str]], dict[str, Any]]:
    """(groups, report) of :func:`find_groups_and_digests`."""
    return find_groups_and_digests(records, near_threshold, workers)[:2]


def find_groups_and_digests(records: Sequence[Record],
                            near_threshold: int = DEFAULT_NEAR_THRESHOLD, workers: int = 1
                            ) -> tuple[list[list[str]], dict[str, Any], dict[str, str]]:
    """Duplicate groups of ``records``, a JSON-ready report of them, and each file's SHA-256
    (computed in the same single read of each file).

    Args:
      records: the images (their ``path``) and labels.
      near_threshold: bits of the 256-bit dHash, see :func:`near_pairs`; 0 matches only
        identical files and identical-looking images.
      workers: processes reading and hashing the files.
    Returns:
      (groups, report, digests): groups are lists of 2+ paths (in records' order) that
      must share a split; report holds the counts, every group, and the conflicts: groups
      whose members carry different labels, with the labels; digests maps each path to
      the SHA-256 (hex) of its bytes ("" for a file that cannot be read).
    """
    start = time.monotonic()
    prints = fingerprint([record.path for record in records], workers)
    hashed = time.monotonic()
    plan = plan_for(prints.bits[prints.readable], prints.mirror_bits[prints.readable],
                    near_threshold)
    groups, report = group_report(records, exact_pairs(prints.sha256),
                                  near_pairs(prints, near_threshold, plan),
                                  int((~prints.readable).sum()), near_threshold, plan)
    report["seconds_reading"] = round(hashed - start, 2)
    report["seconds"] = round(time.monotonic() - start, 2)
    return groups, report, dict(zip((record.path for record in records), prints.sha256))
