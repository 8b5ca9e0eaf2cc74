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

Finding the pairs (:func:`near_pairs`) without comparing all n²/2 of them: the 256 bit
positions are cut into m bands (a fixed shuffle of the positions, so that correlated
neighbouring bits fall into different bands). Two hashes within ``wide`` bits differ in
at most ``s`` bits of at least one band whenever m·(s + 1) > wide (pigeonhole: if every
band differed in s + 1 bits or more, they would differ in m·(s + 1) bits). Each hash is
filed under one key per band and per set of s deleted positions of that band (the band's
bits with those positions cleared); two hashes at most s bits apart in a band share the
key that deletes the positions where they differ. So every pair within ``wide`` bits
shares at least one key: no pair can be missed. Pairs that share a key (candidates) are
verified exactly: Hamming distance, then correlation where the rule asks for it. m and s
are chosen by :func:`plan_bands` from n (more deleted positions and wider bands for
larger n). The Beam pipeline (data_prep.beam_pipeline) groups by the same keys with
``GroupByKey``; :func:`near_pairs_dense` is the former all-pairs matcher (a blocked matrix
product), kept as the reference the benchmark and tests compare with.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import math
import multiprocessing
import time
from typing import Any, Iterable, Optional, Sequence

import cv2
import numpy as np

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
# Relative cost of filing one key (hashing, sorting or shuffling it) and of verifying one
# candidate pair, for plan_bands(); measured with benchmarks/bench_duplicates.py.
_KEY_COST, _PAIR_COST = 0.25, 1.0
# Keys of one band held at once, at most (about 16 bytes each while sorting).
_MAX_BAND_ENTRIES = 2e8
# Keys computed at once in BandPlan.keys (64 bytes of work space each).
_KEY_BLOCK = 1 << 20
# 2+ deletions multiply the keys (2,852 per hash at 100k): measured slower and 5x the
# memory of 1 deletion there (bench_duplicates.py), so plans use at most 1.
_MAX_DELETIONS = 1
# Buckets with more entries than this are verified by a matrix product.
_LARGE_BUCKET = 48
_MASK63 = np.uint64((1 << 63) - 1)


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


# -- candidate pairs from hash bands ------------------------------------------------------


def _splitmix(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser over uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclasses.dataclass(frozen=True)
class BandPlan:
    """How hashes are filed so that no pair within ``radius`` bits is missed.

    Attributes:
      radius: the largest Hamming distance of a pair that must share a key, bits.
      bands: the bit positions (0..255) of each band; together every position once.
      deletions: s, positions cleared per key; len(bands) * (s + 1) > radius.
    """

    radius: int
    bands: tuple[tuple[int, ...], ...]
    deletions: int

    def __post_init__(self):
        if len(self.bands) * (self.deletions + 1) <= self.radius:
            raise ValueError(f"{len(self.bands)} bands with {self.deletions} deletions can "
                             f"miss pairs {self.radius} bits apart")

    @property
    def keys_per_hash(self) -> int:
        """Keys each hash is filed under."""
        return sum(math.comb(len(band), self.deletions) for band in self.bands)

    def describe(self) -> str:
        """One line for reports."""
        widths = sorted({len(band) for band in self.bands})
        return (f"{len(self.bands)} bands of {'/'.join(map(str, widths))} bits, "
                f"{self.deletions} deleted position(s) per key, {self.keys_per_hash} keys "
                f"per hash: no pair within {self.radius} bits is missed")

    def keys(self, bits: np.ndarray, band: Optional[int] = None) -> np.ndarray:
        """The keys of packed hashes uint8 [n, 32]: uint64 [n, K] below 2**63.

        Args:
          bits: the hashes.
          band: only this band's keys (K = its deletion sets); None: all bands, in order.
        Equal keys mean equal bits in one band outside one set of deleted positions (up to
        64-bit hash collisions, which only add candidates that verification rejects).
        """
        if band is None:
            return np.concatenate([self.keys(bits, b) for b in range(len(self.bands))], axis=1)
        positions = np.asarray(self.bands[band])
        rows = max(1, _KEY_BLOCK // math.comb(len(positions), self.deletions))
        if len(bits) > rows:  # bounded memory: [rows, K, 64·words] at a time
            return np.concatenate([self.keys(bits[start:start + rows], band)
                                   for start in range(0, len(bits), rows)])
        unpacked = np.unpackbits(bits, axis=1)[:, positions]  # [n, w]
        width = len(positions)
        subsets = list(itertools.combinations(range(width), self.deletions))
        keep = np.ones((len(subsets), width), np.uint8)
        for row, subset in enumerate(subsets):
            keep[row, list(subset)] = 0
        masked = unpacked[:, None, :] & keep[None, :, :]  # [n, K, w]
        padded = -width % 64
        masked = np.concatenate(
            [masked, np.zeros(masked.shape[:2] + (padded,), np.uint8)], axis=2)
        words = np.packbits(masked, axis=2).view(">u8").astype(np.uint64)  # [n, K, words]
        subset_ids = np.arange(len(subsets), dtype=np.uint64) + np.uint64(band << 32)
        key = _splitmix(np.broadcast_to(subset_ids, words.shape[:2]).copy())
        for word in range(words.shape[2]):
            key = _splitmix(key ^ words[:, :, word])
        return key & _MASK63


def plan_bands(radius: int, n: int) -> BandPlan:
    """The band plan with the least expected work for n hashes and pairs within ``radius``.

    For each number of deleted positions s (0.._MAX_DELETIONS) the fewest bands m with m·(s + 1) >
    radius are taken; the cost is the keys filed (2n·m·C(w, s), plain and mirrored hashes)
    plus the entry pairs expected to share a key between uniformly random hashes
    (2n²·m·P(shared key in one band)). Plans whose keys for one band would exceed
    _MAX_BAND_ENTRIES are left out (memory). Real dHashes of faces are far from uniform,
    so their buckets are larger than this model assumes (bench_duplicates.py).
    """
    best = None
    for deletions in range(_MAX_DELETIONS + 1):
        count = min(HASH_BITS, radius // (deletions + 1) + 1)
        w = int(round(HASH_BITS / count))
        if deletions > w:
            continue
        keys = 2.0 * n * count * math.comb(w, deletions)
        if keys / count > _MAX_BAND_ENTRIES and best is not None:
            continue
        shared = sum(math.comb(w, d) * math.comb(w - d, deletions - d)
                     for d in range(deletions + 1)) / 2.0 ** w
        cost = _KEY_COST * keys + _PAIR_COST * 2.0 * float(n) ** 2 * count * shared
        if best is None or cost < best[0]:
            best = (cost, count, deletions)
    _, count, deletions = best
    order = np.random.default_rng(0).permutation(HASH_BITS)  # fixed: bands spread out
    bands = tuple(tuple(sorted(int(p) for p in part)) for part in np.array_split(order, count))
    return BandPlan(radius, bands, deletions)


def bucket_pairs(images: np.ndarray, mirrored: np.ndarray, bits: np.ndarray,
                 radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Image pairs within ``radius`` bits among the entries of one bucket.

    Args:
      images: int [c], the image index of each entry.
      mirrored: bool [c], True where the entry holds the mirrored hash.
      bits: uint8 [c, 32], the entries' packed hashes.
      radius: the largest Hamming distance kept, bits.
    Returns:
      (low, high): int arrays of image indices, low < high, for entry pairs whose lower
      image holds its plain hash (plain-plain or plain-mirrored, as the matching rule
      compares them); a pair may repeat.
    """
    signs = np.unpackbits(bits, axis=1).astype(np.float32) * 2 - 1
    dots = signs @ signs.T  # 256 - 2·Hamming
    rows, cols = np.nonzero(dots >= HASH_BITS - 2 * radius)
    rows, cols = rows[rows < cols], cols[rows < cols]
    image_r, image_c = images[rows], images[cols]
    keep = np.where(image_r < image_c, ~mirrored[rows], ~mirrored[cols] & (image_c < image_r))
    return (np.minimum(image_r, image_c)[keep], np.maximum(image_r, image_c)[keep])


def _runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end positions of the runs of equal keys in a sorted array."""
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return starts, np.r_[starts[1:], len(sorted_keys)]


def _pairs_in_runs(starts: np.ndarray, ends: np.ndarray
                   ) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Positions (p, q), p < q, within the same run, in batches."""
    length = ends - starts
    run_end = np.repeat(ends, length)
    position = np.repeat(starts - (np.cumsum(length) - length), length) + np.arange(length.sum())
    active = position[run_end - position > 1]
    run_end = run_end[run_end - position > 1]
    step = 1
    while len(active):
        yield active, active + step
        step += 1
        more = active + step < run_end
        active, run_end = active[more], run_end[more]


def candidate_distances(prints: Fingerprints, plan: BandPlan
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs i < j of readable images sharing a key, within ``plan.radius`` bits.

    Large buckets are verified with :func:`bucket_pairs` (a matrix product, as in the Beam
    pipeline), small ones pair by pair (the same rule, vectorised over all of them).

    Returns:
      (i, j, D): int arrays, each pair once, sorted; D = min(Hamming(dHash i, dHash j),
      Hamming(dHash i, mirrored dHash j)).
    """
    index = np.flatnonzero(prints.readable)
    n = len(index)
    bits, mirror = prints.bits[index], prints.mirror_bits[index]
    # entries: plain hashes 0..n-1, then mirrored ones n..2n-1
    entries = np.concatenate([bits, mirror])
    words = np.ascontiguousarray(entries).view(np.uint64)
    found = [np.zeros(0, np.int64)]
    for band in range(len(plan.bands)):
        keys = np.concatenate([plan.keys(bits, band), plan.keys(mirror, band)]).ravel()
        order = np.argsort(keys)
        entry = order // (len(keys) // (2 * n))
        starts, ends = _runs(keys[order])
        large = ends - starts > _LARGE_BUCKET
        for start, end in zip(starts[large], ends[large]):
            members = entry[start:end]
            low, high = bucket_pairs(members % n, members >= n, entries[members], plan.radius)
            found.append(low.astype(np.int64) * n + high)
        for p, q in _pairs_in_runs(starts[~large], ends[~large]):
            a, b = entry[p], entry[q]
            image_a, image_b = a % n, b % n
            keep = np.where(image_a < image_b, a < n, (b < n) & (image_b < image_a))
            a, b, image_a, image_b = a[keep], b[keep], image_a[keep], image_b[keep]
            distance = np.bitwise_count(np.take(words, a, axis=0)
                                        ^ np.take(words, b, axis=0)).sum(axis=1)
            close = distance <= plan.radius
            low = np.minimum(image_a[close], image_b[close]).astype(np.int64)
            found.append(low * n + np.maximum(image_a[close], image_b[close]))
    codes = np.unique(np.concatenate(found))
    low, high = codes // max(n, 1), codes % max(n, 1)
    distance = np.minimum(hamming(bits[low], bits[high]), hamming(bits[low], mirror[high]))
    return index[low], index[high], distance


def near_pairs(prints: Fingerprints, near_threshold: int,
               plan: Optional[BandPlan] = None) -> list[tuple[int, int]]:
    """Index pairs (i < j, sorted) of near-identical readable images (module docstring).

    Args:
      prints: the images' fingerprints.
      near_threshold: the largest Hamming distance, in bits of the 256-bit dHash, at which
        two images match on the hash alone.
      plan: the hash bands (default: plan_bands for these images).
    """
    radius = wide_threshold(near_threshold)
    plan = plan or plan_bands(radius, int(prints.readable.sum()))
    if plan.radius < radius:
        raise ValueError(f"the band plan covers {plan.radius} bits, the rule needs {radius}")
    low, high, distance = candidate_distances(prints, plan)
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
                 plan: BandPlan) -> tuple[list[list[str]], dict[str, Any]]:
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
    prints = fingerprint([record.path for record in records], workers)
    hashed = time.monotonic()
    plan = plan_bands(wide_threshold(near_threshold), len(records))
    groups, report = group_report(records, exact_pairs(prints.sha256),
                                  near_pairs(prints, near_threshold, plan),
                                  int((~prints.readable).sum()), near_threshold, plan)
    report["seconds_reading"] = round(hashed - start, 2)
    report["seconds"] = round(time.monotonic() - start, 2)
    return groups, report
