"""Duplicate detection: exact copies, re-encoded/resized/mirrored copies, and real UTKFace."""

import hashlib
import os
import time

import cv2
import numpy as np
import pytest

from data_prep.adapters.base import Record
from data_prep import band_join, duplicates, hash_bands
from data_prep.duplicates import connected_groups, find_groups


def _scene(seed: int, size: int = 160) -> np.ndarray:
    """A photo-like image: smooth colour blobs (blurred noise), uint8 BGR [size, size, 3]."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(image, (0, 0), 3)


def _jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    """Originals, their copies of several kinds, distinct images and broken files."""
    folder = tmp_path_factory.mktemp("dups")
    files = {}

    def put(name, data, label):
        (folder / name).write_bytes(data)
        files[name] = label

    for i in range(30):
        put(f"distinct_{i:02d}.jpg", _jpeg(_scene(i)), 20 + i)
    put("copy_of_00.jpg", (folder / "distinct_00.jpg").read_bytes(), 21)  # conflicting age
    put("reencoded_01.jpg", _jpeg(_scene(1), quality=60), 21)
    smaller = cv2.resize(_scene(2), (131, 131), interpolation=cv2.INTER_AREA)
    put("resized_02.jpg", _jpeg(smaller), 22)
    put("mirrored_03.jpg", _jpeg(_scene(3)[:, ::-1]), 23)
    brighter = np.clip(_scene(4).astype(np.int16) + 25, 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", brighter)
    put("brighter_04.png", png.tobytes(), 24)
    put("copy_of_copy_00.jpg", (folder / "distinct_00.jpg").read_bytes(), 20)
    put("text.jpg", b"this is not an image", 30)
    put("text_again.jpg", b"this is not an image", 31)
    put("empty.jpg", b"", 32)
    put("flat.jpg", _jpeg(np.full((64, 64, 3), 128, np.uint8)), 33)
    records = [Record(str(folder / name), float(label)) for name, label in sorted(files.items())]
    return folder, records


def _names(groups):
    return sorted(sorted(os.path.basename(path) for path in group) for group in groups)


def test_copies_of_every_kind_are_grouped_and_nothing_else(made_up):
    folder, records = made_up
    groups, report = find_groups(records, near_threshold=20)
    assert _names(groups) == [
        ["brighter_04.png", "distinct_04.jpg"],
        ["copy_of_00.jpg", "copy_of_copy_00.jpg", "distinct_00.jpg"],
        ["distinct_01.jpg", "reencoded_01.jpg"],
        ["distinct_02.jpg", "resized_02.jpg"],
        ["distinct_03.jpg", "mirrored_03.jpg"],
        ["text.jpg", "text_again.jpg"],  # undecodable, but byte-identical
    ]
    assert report["groups"] == 6 and report["images_in_groups"] == 13
    assert report["exact_groups"] == 2 and report["undecodable"] == 3  # text x2, empty
    assert report["largest_group"] == 3
    # only the copies of 00 (ages 20, 21, 20) and the two text files disagree on labels
    assert report["conflicting_groups"] == 2
    conflict = next(c for c in report["conflicts"] if len(c["paths"]) == 3)
    labels = dict(zip((os.path.basename(p) for p in conflict["paths"]), conflict["labels"]))
    assert labels == {"copy_of_00.jpg": 21.0, "copy_of_copy_00.jpg": 20.0,
                      "distinct_00.jpg": 20.0}
    assert report["group_paths"] == groups


def test_threshold_zero_keeps_only_exact_and_identical_looking_copies(made_up):
    _, records = made_up
    groups, report = find_groups(records, near_threshold=0)
    names = _names(groups)
    assert ["copy_of_00.jpg", "copy_of_copy_00.jpg", "distinct_00.jpg"] in names
    assert ["distinct_02.jpg", "resized_02.jpg"] not in names
    assert report["near_threshold"] == 0


def test_same_labels_are_not_conflicts(tmp_path):
    data = _jpeg(_scene(7))
    records = []
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(data)
        records.append(Record(str(tmp_path / name), 33.0))
    groups, report = find_groups(records)
    assert len(groups) == 1 and report["conflicting_groups"] == 0 and report["conflicts"] == []


def test_union_find_joins_chains():
    assert connected_groups(6, [(0, 3), (3, 5), (1, 2)]) == [[0, 3, 5], [1, 2]]
    assert connected_groups(3, []) == []


# Same photos in the real UTKFace release, checked by eye while tuning the threshold.
KNOWN_UTKFACE = [
    # 1 bit apart, ages 10 and 9
    ("10_0_0_20170110225451638.jpg.chip.jpg", "9_0_0_20170110220148443.jpg.chip.jpg"),
    # mirror images of each other
    ("22_0_1_20170113133326664.jpg.chip.jpg", "22_0_1_20170113133327736.jpg.chip.jpg"),
    # 28 bits apart, thumbnail correlation 0.999
    ("61_0_0_20170111203523343.jpg.chip.jpg", "67_0_0_20170120225145905.jpg.chip.jpg"),
    # the same bytes
    ("103_0_2_20170112213001988.jpg.chip.jpg", "80_0_2_20170111201008732.jpg.chip.jpg"),
]


def test_real_utkface_sample(utkface_dir):
    """All age-1 UTKFace babies (look-alikes: a hard case for false matches) plus known pairs."""
    names = sorted(name for name in os.listdir(utkface_dir) if name.startswith("1_"))
    names += [name for pair in KNOWN_UTKFACE for name in pair]
    records = [Record(os.path.join(utkface_dir, name), float(name.split("_")[0]))
               for name in names]
    start = time.monotonic()
    groups, report = find_groups(records)
    seconds = time.monotonic() - start
    prints = duplicates.fingerprint([record.path for record in records])
    assert duplicates.near_pairs(prints, 20) == duplicates.near_pairs_dense(prints, 20)
    print(f"\nUTKFace sample: {len(records)} images, {report['groups']} groups, "
          f"{report['conflicting_groups']} conflicting, {seconds:.1f} s")
    group_of = {path: i for i, group in enumerate(groups) for path in group}
    for a, b in KNOWN_UTKFACE:
        path_a, path_b = (os.path.join(utkface_dir, n) for n in (a, b))
        assert path_a in group_of and group_of[path_a] == group_of.get(path_b), (a, b)
    conflicting = {tuple(sorted(c["paths"])): c["labels"] for c in report["conflicts"]}
    pair = tuple(sorted(os.path.join(utkface_dir, n) for n in KNOWN_UTKFACE[0]))
    assert sorted(conflicting[pair]) == [9.0, 10.0]
    # every byte-identical pair, found independently, shares a group
    by_digest = {}
    for record in records:
        digest = hashlib.sha256(open(record.path, "rb").read()).hexdigest()
        by_digest.setdefault(digest, []).append(record.path)
    copies = [paths for paths in by_digest.values() if len(paths) > 1]
    assert copies and report["exact_groups"] == len(copies)
    for paths in copies:
        assert len({group_of.get(path) for path in paths}) == 1
    # look-alike babies are not lumped together: groups stay small and few
    assert report["largest_group"] <= 6
    assert 20 <= report["groups"] <= 120, report["groups"]
    assert seconds < 30


def _flip(bits: np.ndarray, count: int, rng) -> np.ndarray:
    """Packed hash bits [32] with ``count`` distinct random bits flipped."""
    noise = np.zeros(duplicates.HASH_BITS, np.uint8)
    noise[rng.choice(duplicates.HASH_BITS, count, replace=False)] = 1
    return bits ^ np.packbits(noise)


def _skewed(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Face-like packed hashes [n, 32] (plain, mirrored): biased bits, correlated pairs."""
    bias = rng.uniform(0.03, 0.97, duplicates.HASH_BITS)
    unpacked = rng.random((n, duplicates.HASH_BITS)) < bias
    unpacked[:, 1::2] ^= rng.random((n, duplicates.HASH_BITS // 2)) < 0.1  # noisy copies
    unpacked[:, 1::2] ^= unpacked[:, ::2]  # of the even bits
    return np.packbits(unpacked, axis=1), np.packbits(unpacked[:, ::-1], axis=1)


@pytest.mark.parametrize("radius,n,skewed", [(30, 2000, False), (30, 2000, True),
                                             (30, 10 ** 7, True), (7, 1000, False),
                                             (0, 1000, True)])
def test_band_plans_never_miss_a_pair_within_the_radius(radius, n, skewed):
    """Pigeonhole: hashes exactly ``radius`` bits apart always meet, plain or mirrored,
    whatever bands the statistics choose; unrelated hashes rarely do."""
    rng = np.random.default_rng(radius + n)
    base, base_mirror = _skewed(300, rng) if skewed else (
        rng.integers(0, 256, (300, duplicates.HASH_BYTES), dtype=np.uint8),) * 2
    stats = hash_bands.HashStats.of(base, base_mirror) if skewed else None
    plan = hash_bands.plan_bands(radius, n, stats)
    assert len(plan.bands) * (plan.flips + 1) > radius
    assert sorted(p for band in plan.bands for p in band) == list(range(duplicates.HASH_BITS))
    near = np.stack([_flip(row, radius, rng) for row in base[:100]])
    # images 0..99 base; 100..199 their near copies; 200..299 mirrored near copies of
    # 0..99 (plain hash: unrelated); 300..399 others
    bits = np.concatenate([base[:100], near, rng.integers(0, 256, (100, 32), np.uint8),
                           base[100:200]])
    mirror = np.concatenate([base_mirror[:100], _skewed(100, rng)[0], near,
                             base_mirror[100:200]])
    codes = band_join.close_pairs(bits, mirror, plan)
    pairs = set(zip((codes // len(bits)).tolist(), (codes % len(bits)).tolist()))
    assert {(k, 100 + k) for k in range(100)} <= pairs
    assert {(k, 200 + k) for k in range(100)} <= pairs
    # every pair found is within the radius, once, and ...
    low, high = codes // len(bits), codes % len(bits)
    assert (low < high).all() and len(set(codes.tolist())) == len(codes)
    distance = np.minimum(duplicates.hamming(bits[low], bits[high]),
                          duplicates.hamming(bits[low], mirror[high]))
    assert (distance <= radius).all()
    # ... every pair within the radius is found (all pairs compared)
    everything = np.minimum(duplicates.hamming(bits[:, None], bits[None]),
                            duplicates.hamming(bits[:, None], mirror[None]))
    assert pairs == set(zip(*map(np.ndarray.tolist, np.nonzero(np.triu(everything <= radius,
                                                                        1)))))


def test_a_plan_that_could_miss_pairs_is_refused():
    bands = tuple(tuple(part) for part in np.array_split(np.arange(256), 15))
    with pytest.raises(ValueError, match="can miss pairs"):
        hash_bands.BandPlan(30, bands, 1)
    with pytest.raises(ValueError, match="every bit position"):
        hash_bands.BandPlan(30, bands[:-1] + ((0,),) * 2, 1)


def test_hash_statistics_merge_exactly():
    rng = np.random.default_rng(3)
    bits, mirror = _skewed(500, rng)
    whole = hash_bands.HashStats.of(bits, mirror)
    parts = hash_bands.HashStats.of(bits[:123], mirror[:123]).merge(
        hash_bands.HashStats.of(bits[123:], mirror[123:]))
    assert whole.count == parts.count == 500
    np.testing.assert_array_equal(whole.ones, parts.ones)
    np.testing.assert_array_equal(whole.both, parts.both)
    unpacked = np.unpackbits(bits, axis=1).astype(np.int64)
    np.testing.assert_array_equal(whole.both[0], unpacked.T @ unpacked)
    probability, _ = whole.differences()
    i, j = rng.integers(0, 500, (2, 20000))
    sampled = (np.unpackbits(bits[i] ^ bits[j], axis=1).mean(0)
               + np.unpackbits(bits[i] ^ mirror[j], axis=1).mean(0)) / 2
    np.testing.assert_allclose(probability, sampled, atol=0.03)


def test_banded_matcher_finds_exactly_the_all_pairs_matches():
    """Copies planted at every distance 0..32, plain and mirrored, with and without a
    correlated thumbnail, among random images: both matchers agree pair for pair."""
    rng = np.random.default_rng(0)
    n = 3000
    bits = rng.integers(0, 256, (n, duplicates.HASH_BYTES), dtype=np.uint8)
    mirror = rng.integers(0, 256, (n, duplicates.HASH_BYTES), dtype=np.uint8)
    thumbs = rng.integers(0, 256, (n, duplicates.THUMB, duplicates.THUMB), dtype=np.uint8)
    planted = {}
    for k, distance in enumerate(list(range(33)) * 4):
        original, copy = 2 * k, 2 * k + 1
        mirrored, correlated = k % 2 == 1, (k // 33) % 2 == 0
        source = mirror[original] if mirrored else bits[original]
        bits[copy] = _flip(source, distance, rng)
        mirror[copy] = _flip(bits[original] if mirrored else mirror[original], distance, rng)
        if correlated:
            thumbs[copy] = np.clip(thumbs[original] + rng.integers(-5, 6, thumbs[0].shape),
                                   0, 255)
        planted[(original, copy)] = distance <= 20 or (distance <= 30 and correlated)
    prints = duplicates.Fingerprints([""] * n, np.ones(n, bool), bits, mirror, thumbs)
    banded = duplicates.near_pairs(prints, 20)
    assert banded == duplicates.near_pairs_dense(prints, 20)
    assert {pair for pair, match in planted.items() if match} <= set(banded)
    assert not {pair for pair, match in planted.items() if not match} & set(banded)
    # plans for other sizes and statistics (other bands and flips) find the same pairs
    for stats in (None, hash_bands.HashStats.of(*_skewed(100, rng))):
        for size in (n, 10 ** 7):
            plan = hash_bands.plan_bands(30, size, stats)
            assert duplicates.near_pairs(prints, 20, plan) == banded


def test_all_utkface_crops_same_pairs_as_all_pairs(utkface_dir):
    """Every UTKFace crop (~20k real faces: biased, correlated hashes): the banded matcher
    finds exactly the all-pairs matcher's pairs (CPU seconds printed; taken on a loaded
    machine they are indicative only)."""
    names = sorted(name for name in os.listdir(utkface_dir) if name.endswith(".jpg"))
    assert len(names) > 20_000
    prints = duplicates.fingerprint([os.path.join(utkface_dir, name) for name in names], 2)
    seconds, found = {}, {}
    for name, matcher in (("banded", duplicates.near_pairs),
                          ("dense", duplicates.near_pairs_dense)):
        start = time.process_time()
        found[name] = matcher(prints, 20)
        seconds[name] = round(time.process_time() - start, 1)
    banded = found["banded"]
    assert banded == found["dense"] and len(banded) > 800
    assert len(connected_groups(len(prints), banded)) > 700
    print(f"\n{len(names)} UTKFace crops: {len(banded)} pairs; CPU s {seconds}")
