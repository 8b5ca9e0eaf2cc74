"""data_prep.build on Apache Beam: the same duplicates, records and manifest as the local
build, offline, on synthetic images and on real UTKFace photos (real MTCNN).

The Beam builds run on the FnApiRunner in this process (workers: 1), the duplicates
pipeline also in Beam's multi-process mode (workers: 2), under a guard that fails any
connection outside the loopback interface.
"""

import os
import shutil
import socket

import cv2
import numpy as np
import pytest

beam = pytest.importorskip("apache_beam", reason="pip install 'tfdldl[beam]' for these tests")

from data_prep import band_join, beam_pipeline, duplicates, hash_bands, synthetic  # noqa: E402
from data_prep import build as build_module  # noqa: E402
from data_prep.adapters.base import Record  # noqa: E402
from data_prep.config import DataConfig  # noqa: E402
from tfdldl import example_schema as schema  # noqa: E402
from tfdldl.config import from_dict  # noqa: E402
from tfdldl.label_space import AGE  # noqa: E402
from tfdldl.manifest import read_manifest  # noqa: E402
from tfdldl.tfrecord_reader import decode_face, iter_records, verify_shards  # noqa: E402

UTKFACE_SAMPLE = (
    "1_1_1_20170109191050443.jpg.chip.jpg",
    "24_1_2_20170116171604159.jpg.chip.jpg",
    "26_1_1_20170113012119680.jpg.chip.jpg",
    "32_0_1_20170113183229559.jpg.chip.jpg",
    "44_0_3_20170119184239800.jpg.chip.jpg",
    "53_1_0_20170110160643282.jpg.chip.jpg",
    "65_0_0_20170117171434763.jpg.chip.jpg",
    "96_1_2_20170105174624519.jpg.chip.jpg",
    # the same photo twice (1 bit apart), ages 10 and 9: one duplicate group
    "10_0_0_20170110225451638.jpg.chip.jpg",
    "9_0_0_20170110220148443.jpg.chip.jpg",
)


@pytest.fixture
def offline(monkeypatch):
    """Fail every connection that leaves the machine, and record any use of Prism."""
    attempts = []
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not (host.startswith("127.") or host in ("::1", "localhost")):
            attempts.append(address)
            raise OSError(f"test_beam: network access to {address} refused")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    from apache_beam.runners.portability import prism_runner

    def no_prism(*args, **kwargs):
        attempts.append("PrismRunner")
        raise AssertionError("the Prism runner (a download) must not be used")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", no_prism)
    yield attempts
    assert attempts == []


def _scene(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(10, 10, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC),
                            (0, 0), 3)


@pytest.mark.parametrize("workers", [1, 2])
def test_duplicate_pairs_match_the_local_matcher(tmp_path, offline, workers):
    """Copies of every kind plus an unreadable file: same pairs, groups, band plan and
    report, in this process (workers: 1) and in Beam's multi-process mode (workers: 2:
    two SDK worker processes that talk to the runner over loopback gRPC)."""
    records = []
    for i in range(12):
        path = tmp_path / f"scene_{i:02d}.png"
        cv2.imwrite(str(path), _scene(i))
        records.append(Record(str(path), float(20 + i)))
    copies = {"copy_00.png": (tmp_path / "scene_00.png").read_bytes(),
              "mirror_01.png": cv2.imencode(".png", _scene(1)[:, ::-1])[1].tobytes(),
              "jpeg_02.jpg": cv2.imencode(".jpg", _scene(2), [cv2.IMWRITE_JPEG_QUALITY, 60])[1]
              .tobytes(),
              "brighter_03.png": cv2.imencode(
                  ".png", np.clip(_scene(3).astype(int) + 30, 0, 255).astype(np.uint8))[1]
              .tobytes(),
              "broken.jpg": b"not an image"}
    for name, data in copies.items():
        (tmp_path / name).write_bytes(data)
        records.append(Record(str(tmp_path / name), 40.0))
    local_groups, local_report = duplicates.find_groups(records, 20)
    options = beam_pipeline.pipeline_options(from_dict(DataConfig, {"workers": workers}))
    assert options.get_all_options()["direct_running_mode"] == (
        "multi_processing" if workers == 2 else "in_memory")
    groups, report, digests = beam_pipeline.find_groups(records, 20, options, str(tmp_path / "w"))
    assert len(local_groups) == 4
    assert groups == local_groups
    for key in ("groups", "exact_groups", "undecodable", "images_in_groups", "conflicts",
                "group_paths", "candidates"):
        assert report[key] == local_report[key], key
    assert digests[records[0].path] == digests[str(tmp_path / "copy_00.png")] != ""


def test_band_buckets_with_index_flips_find_the_local_pairs():
    """Beam's bucket keys and verification (the functions the pipeline maps), grouped
    here by key as GroupByKey does, with a plan that flips bits on both sides (index and
    probes, wide bands): exactly data_prep.band_join.close_pairs's pairs and distances."""
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 256, (200, duplicates.HASH_BYTES), dtype=np.uint8)
    mirror = rng.integers(0, 256, (200, duplicates.HASH_BYTES), dtype=np.uint8)
    for k in range(40):  # copies 0..39 bits away, every second one mirrored
        noise = np.packbits(rng.permutation(duplicates.HASH_BITS) < k)
        (mirror if k % 2 else bits)[100 + k] = bits[k] ^ noise
    plan = hash_bands.plan_bands(30, 10 ** 6)
    assert max(len(plan.index_masks(band)) for band in range(len(plan.bands))) > 1
    buckets = {}
    for index in range(len(bits)):
        fingerprint = {"index": index, "bits": bits[index].tobytes(),
                       "mirror": mirror[index].tobytes()}
        for key, entry in beam_pipeline._band_entries(fingerprint, plan):
            buckets.setdefault(key, []).append(entry)
    found = {pair for bucket in buckets.items()
             for pair in beam_pipeline._verify_bucket(bucket, plan.radius)}
    codes = band_join.close_pairs(bits, mirror, plan)
    low, high = codes // len(bits), codes % len(bits)
    distance = np.minimum(duplicates.hamming(bits[low], bits[high]),
                          duplicates.hamming(bits[low], mirror[high]))
    assert found == set(zip(low.tolist(), high.tolist(), distance.tolist()))
    assert {(k, 100 + k) for k in range(31)} <= {(a, b) for a, b, _ in found}


def _config(out, **sections) -> DataConfig:
    data = {"splits": {"ratios": [0.5, 0.25, 0.25]}, "workers": 1,
            "output": {"dir": str(out), "records_per_shard": 3, "contact_sheet_faces": 4}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(DataConfig, data, source="test")


def _records(out_dir):
    """source -> decoded record over every split, read with the TF-free reader."""
    manifest = read_manifest(out_dir)
    verify_shards(manifest)
    found = {}
    for split in schema.SPLITS:
        for path in manifest.splits[split]:
            for _, data in iter_records(path):
                face = decode_face(data)
                found[face.source] = (split, face)
    return manifest, found


def _build_both_ways(config: DataConfig, tmp_path, offline):
    local = build_module.build(config, log=lambda line: None)
    beam_config = from_dict(DataConfig, {**_as_dict(config), "runner": {"name": "beam"},
                                         "output": {**_as_dict(config)["output"],
                                                    "dir": str(tmp_path / "beam")}})
    lines = []
    beamed = build_module.build(beam_config, log=lines.append)
    assert "FnApiRunner" in lines[0]
    return local, beamed


def _as_dict(config):
    from tfdldl.config import to_dict

    return to_dict(config)


def _same_face_pixels(jpeg, other_jpeg, source):
    """Same detector, alignment and encoder: the same face. Not always the same bytes: with
    TensorFlow's oneDNN kernels (tfdldl.cli.use_onednn) MTCNN's landmarks carry float
    round-off that depends on which photos were detected together, enough to move a pixel
    of the warped crop by a grey level and so a JPEG coefficient."""
    if jpeg == other_jpeg:
        return
    pixels, other = (cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
                     .astype(np.int16) for data in (jpeg, other_jpeg))
    assert pixels.shape == other.shape, source
    assert np.abs(pixels - other).mean() < 0.25, source


def _same_build(local, beamed, local_dir, beam_dir):
    """Record by record and count by count, the two builds agree."""
    local_manifest, local_records = _records(local_dir)
    beam_manifest, beam_records = _records(beam_dir)
    assert sorted(local_records) == sorted(beam_records) and local_records
    for source, (split, face) in local_records.items():
        other_split, other = beam_records[source]
        assert other_split == split, source
        assert (other.label, other.sigma, other.subject, other.gender, other.group) == \
            (face.label, face.sigma, face.subject, face.gender, face.group), source
        np.testing.assert_array_equal(other.distribution, face.distribution)
        assert other.coverage == pytest.approx(face.coverage, abs=1e-6)
        _same_face_pixels(other.jpeg, face.jpeg, source)
    for key in ("splits", "records", "label_histogram", "build"):
        if key == "splits":
            assert {s: v["count"] for s, v in beamed["splits"].items()} == \
                {s: v["count"] for s, v in local["splits"].items()}
            assert beamed["splits"] == local["splits"]  # same shard names and counts
        else:
            assert beamed[key] == local[key], key
    assert beamed["skips"]["by_reason"] == local["skips"]["by_reason"]
    for key in ("attempted", "detected", "center_cropped", "no_face"):
        assert beamed["alignment"][key] == local["alignment"][key], key
    assert beamed["alignment"]["mean_confidence"] == pytest.approx(
        local["alignment"]["mean_confidence"]) if local["alignment"]["mean_confidence"] \
        else beamed["alignment"]["mean_confidence"] is None
    for key in ("groups", "group_paths", "exact_groups", "undecodable"):
        assert beamed["duplicates"][key] == local["duplicates"][key], key
    assert beam_manifest.counts == local_manifest.counts
    # and tf.data reads the Beam shards as it reads the local ones
    import tensorflow as tf

    for split in schema.SPLITS:
        count = sum(1 for _ in tf.data.TFRecordDataset(beam_manifest.splits[split]))
        assert count == beam_manifest.counts[split]


def test_synthetic_set_builds_the_same_on_beam(tmp_path, offline):
    raw = tmp_path / "raw"
    synthetic.write_image_folder(str(raw), 18, AGE, size=48)
    (raw / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    with open(raw / "labels.csv", "a", encoding="utf-8") as handle:
        handle.write("images/broken.jpg,30\n")
    config = _config(tmp_path / "local", dataset="synthetic",
                     adapter={"name": "generic_csv", "options": {"labels": str(raw / "labels.csv")}},
                     alignment={"output_size": 32, "min_face_size": 24, "precropped": True,
                                "on_no_face": "center_crop"},
                     duplicates={"near_threshold": 0})
    local, beamed = _build_both_ways(config, tmp_path, offline)
    assert beamed["skips"]["by_reason"] == {"unreadable_image": 1}
    _same_build(local, beamed, tmp_path / "local", tmp_path / "beam")


def test_utkface_sample_builds_the_same_on_beam(utkface_dir, tmp_path, offline):
    images = tmp_path / "images"
    images.mkdir()
    for name in UTKFACE_SAMPLE:
        shutil.copy(os.path.join(utkface_dir, name), images / name)
    config = _config(tmp_path / "local", dataset="utkface_sample",
                     adapter={"name": "utkface", "options": {"root": str(images)}},
                     alignment={"output_size": 48, "min_face_size": 40, "precropped": True})
    local, beamed = _build_both_ways(config, tmp_path, offline)
    assert beamed["duplicates"]["groups"] == 1 and beamed["alignment"]["detected"] >= 8
    _same_build(local, beamed, tmp_path / "local", tmp_path / "beam")


def test_an_item_that_raises_is_a_skip_not_a_failure(tmp_path, monkeypatch):
    """shard_job.align_items, shared by both runners: one bad item, the rest kept."""
    from data_prep import shard_job

    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), _scene(i, size=80 if i == 1 else 96))
        paths.append(str(path))
    config = _config(tmp_path / "out", alignment={"output_size": 32, "min_face_size": 24,
                                                  "precropped": True,
                                                  "on_no_face": "center_crop"})
    settings = build_module._settings(config)
    aligner = settings.aligner()
    real_center_crop = aligner.center_crop

    def flaky(image):
        if image.shape[0] == 80:  # the second image
            raise ValueError("injected failure")
        return real_center_crop(image)

    monkeypatch.setattr(aligner, "center_crop", flaky)
    items = [Record(path=p, source=os.path.basename(p), label=30.0, sigma=2.0) for p in paths]
    examples, faces, skips = shard_job.align_items(items, settings, aligner)
    assert [face[0] for face in faces] == ["0.png", "2.png"] and len(examples) == 2
    assert skips == [[paths[1], "alignment_error", "ValueError: injected failure"]]


def test_options_default_to_the_offline_local_runner():
    options = beam_pipeline.pipeline_options(from_dict(DataConfig, {"workers": 2}))
    values = options.get_all_options()
    assert values["runner"] == "FnApiRunner" and values["direct_num_workers"] == 2
    assert values["direct_running_mode"] == "multi_processing"
    chosen = beam_pipeline.pipeline_options(from_dict(DataConfig, {"runner": {
        "name": "beam", "beam_options": ["runner=DataflowRunner", "project=p",
                                         "save_main_session=true"]}})).get_all_options()
    assert chosen["runner"] == "DataflowRunner" and chosen["project"] == "p"
    assert chosen["save_main_session"] is True


def test_without_beam_the_build_says_how_to_install(tmp_path, monkeypatch):
    import sys

    import data_prep

    monkeypatch.setitem(sys.modules, "apache_beam", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "data_prep.beam_pipeline", raising=False)
    monkeypatch.delattr(data_prep, "beam_pipeline", raising=False)
    config = _config(tmp_path / "out", runner={"name": "beam"},
                     adapter={"name": "generic_csv", "options": {"labels": "x.csv"}})
    with pytest.raises(build_module.BuildError, match=r"pip install 'tfdldl\[beam\]'"):
        build_module.build(config, log=lambda line: None)
