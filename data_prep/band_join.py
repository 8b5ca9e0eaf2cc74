"""The pairs of 256-bit hashes within a Hamming radius that meet in a band plan's buckets.

Carries out a :class:`data_prep.hash_bands.BandPlan` on one machine (the Beam pipeline
meets the same entries and probes through ``GroupByKey`` instead). Per band:

* Index: every image's plain band value with every index mask S flipped (|S| <= s_b),
  sorted by value (then image), with a table of where each value's bucket starts; each
  entry carries its image's full hash and its mask, so that a bucket is read in memory
  order.
* Probes: every query's band value (mirrored queries; plain ones too in bands of odd t_b)
  with every probe mask T flipped (|T| <= u_b), a chunk at a time, sorted by value before
  they look up their buckets. In bands of even t_b (s_b = u_b) a plain query's probes are
  its own entries, so plain pairs meet as two entries of one bucket.
* One meeting per pair: a pair whose band values differ in the bits D (|D| <= s_b + u_b)
  meets once for every split of D into flip sets S ^ T = D (an identical band value
  meets under every S = T; 2 bits apart with s = u = 1 twice). Exactly one split is
  *canonical*: S and T disjoint, S as small as the probe side allows (S empty, or T
  holding u_b bits) and S the lowest bits of D (every bit of S below every bit of T);
  it always exists (|S| = max(0, |D| - u_b) <= s_b), so keeping canonical meetings only
  loses no pair. As integers that is one comparison, S < :func:`limits` (T), made
  before any hash is read (in bands of even t_b the lower image's entry is the S side).
* Verification: XOR and popcount of the hashes' first two 64-bit words, then of all four
  for the few that are still within the radius; met pairs that the matching rule does not
  pair (the mirrored query must be the higher image, a plain probe's query the lower) are
  dropped, and a pair met in several bands is kept once.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from data_prep.hash_bands import BandPlan

_MAX_PREFIX = 26  # a band's bucket table spans at most 2**26 values of its leading bits
_ROWS = 1 << 18  # probes (query x flip) handled at once
_PAIRS = 1 << 18  # meetings handled at once (small arrays: reused memory, cache-resident)
_NO_BIT = np.int64(1 << 40)  # above every band bit: the lowest bit of an empty mask


def limits(masks: np.ndarray, most: int) -> np.ndarray:
    """int64 [k]: for probe masks T (int, [k]) of up to ``most`` bits, the bound below
    which an index mask S makes the canonical split S ^ T of its pair: T's lowest bit
    when T holds ``most`` bits (S < it puts every bit of S below every bit of T, so they
    are disjoint), else 1 (S empty); no bound for an empty T when ``most`` is 0."""
    masks = masks.astype(np.int64)
    lowest = np.where(masks == 0, _NO_BIT, masks & -masks)
    return np.where(np.bitwise_count(masks) == most, lowest, 1)


def within(words_a: np.ndarray, words_b: np.ndarray, radius: int) -> np.ndarray:
    """bool [k]: Hamming distance of hashes as uint64 words [k, 4] at most ``radius``."""
    counts = np.bitwise_count(words_a ^ words_b)
    return (counts[:, 0].astype(np.int16) + counts[:, 1] + counts[:, 2] + counts[:, 3]
            <= radius)


def _close(words_a: np.ndarray, rows_a: np.ndarray, words_b: np.ndarray,
           rows_b: np.ndarray, radius: int) -> np.ndarray:
    """Positions k with H(words_a[rows_a[k]], words_b[rows_b[k]]) <= radius (hashes as
    uint64 words [., 4]): the first two words first, all four for the survivors."""
    half = (np.bitwise_count(words_a[rows_a, 0] ^ words_b[rows_b, 0]).astype(np.int16)
            + np.bitwise_count(words_a[rows_a, 1] ^ words_b[rows_b, 1]))
    near = np.flatnonzero(half <= radius)
    return near[within(words_a[rows_a[near]], words_b[rows_b[near]], radius)]


@dataclasses.dataclass
class _Index:
    """One band's index entries, sorted by value then image.

    Attributes:
      values: int64 [E], each entry's band value (an image's value with a mask flipped).
      images: int64 [E], the entry's image.
      masks: int64 [E], the mask flipped into the entry's value.
      words: uint64 [E, 4], the image's full hash, in entry order.
      starts: [2**p + 1], where each bucket of the values' p leading bits starts.
      shift: width - p; 0 when every bucket holds one value.
      count: n, the number of images.
    """

    values: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    words: np.ndarray
    starts: np.ndarray
    shift: int
    count: int

    @classmethod
    def build(cls, values: np.ndarray, masks: np.ndarray, width: int, words: np.ndarray
              ) -> "_Index":
        """The entries of images' band values int64 [n] with every mask flipped."""
        n = len(values)
        image_bits = max(1, (n - 1).bit_length())  # value·2**b + image < 2**63: b <= 31
        keys = ((values[:, None] ^ masks[None, :]) << image_bits
                | np.arange(n, dtype=np.int64)[:, None]).ravel()
        keys.sort()
        entry_values, images = keys >> image_bits, keys & ((1 << image_bits) - 1)
        del keys
        prefix = min(width, _MAX_PREFIX, max(8, len(images).bit_length() + 2))
        shift = width - prefix
        starts = np.zeros((1 << prefix) + 1, np.int32 if len(images) < 1 << 31 else np.int64)
        starts[1:] = np.cumsum(np.bincount(entry_values >> shift, minlength=1 << prefix))
        return cls(entry_values, images, entry_values ^ values[images], words[images],
                   starts, shift, n)

    def _meet(self, lo: np.ndarray, hi: np.ndarray, want: np.ndarray
              ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(entry positions, their range) for every entry of the ranges [lo, hi) whose
        value is ``want`` (int64, per range)."""
        for positions, which in _expand(lo, hi):
            if self.shift:  # the bucket holds several values
                keep = np.flatnonzero(self.values[positions] == want[which])
                positions, which = positions[keep], which[keep]
            yield positions, which

    def self_pairs(self, radius: int, most: int) -> Iterator[np.ndarray]:
        """Codes low·n + high of the image pairs within ``radius`` bits that meet in a
        bucket when the probes' masks are the entries' own (up to ``most`` bits), the
        lower image's entry taken as the index side."""
        n = self.count
        ends = self.starts[(self.values >> self.shift) + 1]
        bounds = limits(self.masks, most)
        for start in range(0, len(self.values), _ROWS):
            owner = np.arange(start, min(start + _ROWS, len(self.values)), dtype=np.int64)
            lo, hi = owner + 1, ends[owner].astype(np.int64)
            held = owner[hi > lo]
            for positions, which in self._meet(lo[held - start], hi[held - start],
                                               self.values[held]):
                rows = held[which]
                lower = self.images[rows] < self.images[positions]
                keep = np.flatnonzero(
                    np.where(lower, self.masks[rows], self.masks[positions])
                    < np.where(lower, bounds[positions], bounds[rows]))
                rows, positions = rows[keep], positions[keep]
                close = _close(self.words, rows, self.words, positions, radius)
                first, second = self.images[rows[close]], self.images[positions[close]]
                yield np.minimum(first, second) * n + np.maximum(first, second)

    def probe_pairs(self, values: np.ndarray, masks: np.ndarray, table: np.ndarray,
                    higher: bool, radius: int) -> Iterator[np.ndarray]:
        """Codes low·n + high of the pairs within ``radius`` bits met by probing the
        query images' band values int64 [n] with every mask flipped, their hashes
        ``table`` (uint64 [n, 4]) against the entries: the entry's image higher than
        the query's (``higher``, low = query) or lower (high = query)."""
        n, count = len(values), len(masks)
        bounds = limits(masks, int(np.bitwise_count(masks).max()))
        rows = max(1, _ROWS // count)
        number_bits = (rows * count - 1).bit_length()  # value·2**b + probe < 2**63
        for start in range(0, n, rows):
            chunk = values[start:start + rows]
            order = ((chunk[:, None] ^ masks[None, :]) << number_bits
                     | np.arange(len(chunk) * count, dtype=np.int64).reshape(-1, count))
            order = order.ravel()
            order.sort()  # probes in value order: the bucket table is read in order
            probes = order >> number_bits
            bucket = probes >> self.shift
            lo, hi = self.starts[bucket], self.starts[bucket + 1]
            held = np.flatnonzero(hi > lo)
            query, mask = np.divmod(order[held] & ((1 << number_bits) - 1), count)
            bound = bounds[mask]
            for positions, which in self._meet(lo[held].astype(np.int64),
                                               hi[held].astype(np.int64), probes[held]):
                keep = np.flatnonzero(self.masks[positions] < bound[which])
                positions, queries = positions[keep], start + query[which[keep]]
                others = self.images[positions]
                keep = np.flatnonzero(others > queries if higher else others < queries)
                positions, queries, others = positions[keep], queries[keep], others[keep]
                close = _close(self.words, positions, table, queries, radius)
                low, high = (queries, others) if higher else (others, queries)
                yield low[close] * n + high[close]


def _expand(lo: np.ndarray, hi: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, their range) for every position in the ranges, _PAIRS at a time."""
    length = np.maximum(hi - lo, 0)
    ends = np.cumsum(length)
    start = 0
    while start < len(lo):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - length[start] + _PAIRS,
                                                  side="right")))
        part = length[start:stop]
        total = int(part.sum())
        if total:
            offsets = np.cumsum(part) - part
            which = np.repeat(np.arange(start, stop), part)
            yield np.repeat(lo[start:stop] - offsets, part) + np.arange(total), which
        start = stop


def close_pairs(bits: np.ndarray, mirror_bits: np.ndarray, plan: BandPlan) -> np.ndarray:
    """Image pairs i < j with min(H(plain i, plain j), H(plain i, mirrored j)) within
    ``plan.radius`` bits, from packed hashes uint8 [n, 32] (plain and mirrored; n < 2**31).

    Returns:
      int64 [pairs] codes i·n + j, sorted, each pair once.
    Raises:
      ValueError: for 2**31 images or more (split them).
    """
    n = len(bits)
    if n >= 1 << 31:
        raise ValueError(f"close_pairs takes fewer than 2**31 images, got {n}; split them")
    plain_words = np.ascontiguousarray(bits).view(np.uint64)
    mirror_words = np.ascontiguousarray(mirror_bits).view(np.uint64)
    found = [np.zeros(0, np.int64)]
    plain_values, mirror_values = plan.values(bits), plan.values(mirror_bits)
    for band in range(len(plan.bands)):
        index = _Index.build(plain_values[:, band], plan.index_masks(band),
                             len(plan.bands[band]), plain_words)
        masks = plan.probe_masks(band)
        if plan.band_flips(band) % 2 == 0:  # plain probes would be the entries themselves
            found.extend(index.self_pairs(plan.radius, plan.band_flips(band) // 2))
        else:
            found.extend(index.probe_pairs(plain_values[:, band], masks, plain_words, True,
                                           plan.radius))
        found.extend(index.probe_pairs(mirror_values[:, band], masks, mirror_words, False,
                                       plan.radius))
        del index
    return np.unique(np.concatenate(found))
