"""Duplicate detection: exact copies, re-encoded/resized/mirrored copies, and real UTKFace."""

import hashlib
import os
import time

import cv2
import numpy as np
import pytest

from data_prep.adapters.base import Record
from data_prep import duplicates
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


@pytest.mark.parametrize("radius,n", [(30, 2000), (30, 20_000), (30, 100_000), (30, 50),
                                      (7, 1000), (0, 1000)])
def test_band_keys_never_miss_a_pair_within_the_radius(radius, n):
    """Pigeonhole: hashes exactly ``radius`` bits apart always share a key."""
    plan = duplicates.plan_bands(radius, n)
    assert len(plan.bands) * (plan.deletions + 1) > radius
    assert sorted(p for band in plan.bands for p in band) == list(range(duplicates.HASH_BITS))
    rng = np.random.default_rng(radius + n)
    base = rng.integers(0, 256, (200, duplicates.HASH_BYTES), dtype=np.uint8)
    near = np.stack([_flip(row, radius, rng) for row in base])
    far = np.stack([_flip(row, 128, rng) for row in base])  # unrelated hashes
    keys_base, keys_near, keys_far = plan.keys(base), plan.keys(near), plan.keys(far)
    assert all(set(a) & set(b) for a, b in zip(keys_base, keys_near))
    assert keys_base.shape == (200, plan.keys_per_hash) and keys_base.max() < 2 ** 63
    # unrelated hashes share a key only by rare chance
    assert sum(bool(set(a) & set(b)) for a, b in zip(keys_base, keys_far)) < 20


def test_a_plan_that_could_miss_pairs_is_refused():
    with pytest.raises(ValueError, match="can miss pairs"):
        duplicates.BandPlan(30, tuple((i,) for i in range(15)), 1)


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
    # a plan for another n (other bands) finds the same pairs
    assert duplicates.near_pairs(prints, 20, duplicates.plan_bands(30, 10 ** 6)) == banded
