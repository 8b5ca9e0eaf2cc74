"""Multi-index hashing with flips split between index and probes (data_prep.hash_bands):
every plan shape, on real face hashes, finds exactly the pairs within the radius."""

import itertools
import os

import numpy as np
import pytest

from data_prep import band_join, duplicates, hash_bands

RADIUS = 30


def _all_pairs(bits: np.ndarray, mirror: np.ndarray, radius: int) -> set:
    """(i, j), i < j, with min(H(plain i, plain j), H(plain i, mirrored j)) <= radius."""
    signs = np.unpackbits(bits, axis=1).astype(np.float32) * 2 - 1
    mirror_signs = np.unpackbits(mirror, axis=1).astype(np.float32) * 2 - 1
    dots = np.maximum(signs @ signs.T, signs @ mirror_signs.T)  # 256 - 2·Hamming
    rows, cols = np.nonzero(np.triu(dots >= duplicates.HASH_BITS - 2 * radius, 1))
    return set(zip(rows.tolist(), cols.tolist()))


def _planted(bits: np.ndarray, mirror: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """The hashes plus, for each of the first 2 x 31 images, a copy 0..30 bits away
    (every second one mirrored): the copy's plain hash is near the original's mirrored
    one and the other way round."""
    copies, copy_mirrors = [], []
    for k, distance in enumerate(list(range(RADIUS + 1)) * 2):
        noise = np.zeros(duplicates.HASH_BITS, np.uint8)
        noise[rng.choice(duplicates.HASH_BITS, distance, replace=False)] = 1
        noise = np.packbits(noise)
        plain, flipped = (mirror[k], bits[k]) if k % 2 else (bits[k], mirror[k])
        copies.append(plain ^ noise)
        copy_mirrors.append(flipped ^ noise)
    return np.concatenate([bits, copies]), np.concatenate([mirror, copy_mirrors])


@pytest.fixture(scope="module")
def face_hashes(utkface_dir):
    """dHashes (plain, mirrored) of 800 real UTKFace crops plus 62 planted near copies."""
    names = sorted(name for name in os.listdir(utkface_dir) if name.endswith(".jpg"))
    chosen = np.random.default_rng(0).choice(len(names), 800, replace=False)
    prints = duplicates.fingerprint([os.path.join(utkface_dir, names[k]) for k in chosen])
    assert prints.readable.all()
    return _planted(prints.bits, prints.mirror_bits, np.random.default_rng(1))


@pytest.mark.parametrize("n", [10 ** 3, 10 ** 6, 10 ** 8])
def test_every_plan_shape_finds_exactly_the_pairs_within_the_radius(face_hashes, n):
    """Plans for 1k to 100M images (16 bands of 16 bits down to 8 of 32; index flips 0
    or 1; bucket tables over a band's leading bits only) on real, correlated face hashes:
    the same pairs as comparing all of them, the planted ones included."""
    bits, mirror = face_hashes
    plan = hash_bands.plan_bands(RADIUS, n, hash_bands.HashStats.of(bits, mirror))
    flips = [plan.band_flips(band) for band in range(len(plan.bands))]
    assert sum(t + 1 for t in flips) > RADIUS  # the pigeonhole inequality
    codes = band_join.close_pairs(bits, mirror, plan)
    found = set(zip((codes // len(bits)).tolist(), (codes % len(bits)).tolist()))
    expected = _all_pairs(bits, mirror, RADIUS)
    assert found == expected
    assert {(k, 800 + k) for k in range(2 * (RADIUS + 1))} <= found


def test_plans_widen_their_bands_as_n_grows():
    """More images, fewer and wider bands (fewer meetings per pair, more flips): the work
    per image pair falls, which is what keeps the total below n²."""
    plans = [hash_bands.plan_bands(RADIUS, n) for n in (2 * 10 ** 4, 10 ** 6, 10 ** 8)]
    counts = [len(plan.bands) for plan in plans]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    meetings = [plan.expected for plan in plans]
    assert meetings == sorted(meetings, reverse=True) and meetings[0] > 10 * meetings[-1]
    for plan in plans:
        assert len(plan.bands) * (plan.flips + 1) - plan.fewer == RADIUS + 1


def test_expected_meetings_count_every_flip_pair():
    """The cost model's meetings in one band equal the number of (index mask, probe
    mask) pairs that carry one value onto the other, counted by brute force."""
    rng = np.random.default_rng(2)
    width, probability = 9, rng.uniform(0.1, 0.6, 9)
    for index_flips, probe_flips in ((0, 1), (1, 1), (1, 2)):
        index_masks = hash_bands.flip_masks(width, index_flips)
        probe_masks = hash_bands.flip_masks(width, probe_flips)
        total = 0.0
        for differing in itertools.product((0, 1), repeat=width):
            chance = np.prod(np.where(differing, probability, 1 - probability))
            x_xor_y = int(sum(bit << k for k, bit in enumerate(differing)))
            met = np.sum((index_masks[:, None] ^ probe_masks[None, :]) == x_xor_y)
            total += chance * met
        assert hash_bands._meetings(probability, index_flips, probe_flips) == \
            pytest.approx(total, rel=1e-9)


def test_bad_plans_are_refused_with_the_reason():
    bands = tuple(tuple(part) for part in np.array_split(np.arange(256), 10))
    hash_bands.BandPlan(RADIUS, bands, 3, fewer=9)  # 10 x 4 - 9 = 31 > 30
    with pytest.raises(ValueError, match="can miss pairs"):
        hash_bands.BandPlan(RADIUS, bands, 2)  # 10 x 3 = 30
    with pytest.raises(ValueError, match="fewer must be"):
        hash_bands.BandPlan(RADIUS, bands, 0, fewer=1)
    wide = tuple(tuple(part) for part in np.array_split(np.arange(256), 7))
    with pytest.raises(ValueError, match="at most 32 bits"):
        hash_bands.BandPlan(RADIUS, wide, 4)


@pytest.mark.parametrize("index_flips,probe_flips", [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)])
def test_every_band_difference_has_exactly_one_canonical_meeting(index_flips, probe_flips):
    """Of all (index mask S, probe mask T) with S ^ T = D, band_join keeps exactly one
    for every difference D of up to s + u bits: pairs are verified once per band and
    none is lost."""
    width = 7
    index_masks = hash_bands.flip_masks(width, index_flips)
    probe_masks = hash_bands.flip_masks(width, probe_flips)
    masks_s = np.repeat(index_masks, len(probe_masks))
    masks_t = np.tile(probe_masks, len(index_masks))
    kept = masks_s < band_join.limits(masks_t, probe_flips)
    differences = masks_s ^ masks_t
    reachable = np.flatnonzero(np.bitwise_count(np.arange(1 << width))
                               <= index_flips + probe_flips)
    assert set(differences.tolist()) == set(reachable.tolist())
    np.testing.assert_array_equal(np.bincount(differences[kept], minlength=1 << width)[
        reachable], np.ones(len(reachable)))
