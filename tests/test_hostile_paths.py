"""Label files that point out of their dataset, and links planted where writers write."""

import json
import os
import stat

import pytest

from data_prep.adapters import Skip, make_adapter
from tfdldl import safe_io
from tfdldl.config import save_config
from tfdldl.experiment import Experiment
from tfdldl.jsonio import write_json


def _touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8 not really a jpeg")


# -- paths in label files stay inside the dataset root -------------------------------------


def test_csv_paths_leading_out_of_the_root_are_skipped(tmp_path):
    _touch(tmp_path / "set", "faces/a.jpg", "faces/b.jpg")
    outside = tmp_path / "secret.jpg"
    _touch(tmp_path, "secret.jpg")
    inside_absolute = tmp_path / "set" / "faces" / "b.jpg"
    (tmp_path / "set" / "labels.csv").write_text(
        f"faces/a.jpg,31\n{outside},20\n../secret.jpg,21\nfaces/../../secret.jpg,22\n"
        f"/etc/passwd,23\n{inside_absolute},40\n")
    items = list(make_adapter("generic_csv",
                              labels=str(tmp_path / "set" / "labels.csv")).records())
    kept = [item.path for item in items if not isinstance(item, Skip)]
    assert kept == [str(tmp_path / "set" / "faces" / "a.jpg"), str(inside_absolute)]
    skips = [item for item in items if isinstance(item, Skip)]
    assert [skip.reason for skip in skips] == ["outside_root"] * 4
    assert skips[0].path.endswith("labels.csv:2") and "outside the dataset root" in skips[0].detail
    assert all("passwd" not in skip.path for skip in skips)  # nothing of it is read


def test_every_label_file_adapter_refuses_paths_outside_its_root(tmp_path):
    root = tmp_path / "images"
    _touch(root, "a.jpg")
    (tmp_path / "db.json").write_text(json.dumps(
        [{"img_path": "a.jpg", "age": 30, "folder": 0},
         {"img_path": "/etc/hostname", "age": 30, "folder": 0}]))
    items = list(make_adapter("benchmark_json", labels=str(tmp_path / "db.json"),
                              root=str(root)).records())
    assert [getattr(item, "reason", "record") for item in items] == ["record", "outside_root"]
    (tmp_path / "chalearn.csv").write_text("a.jpg;30;2\n../../etc/hostname;30;2\n")
    items = list(make_adapter("chalearn_csv", labels=str(tmp_path / "chalearn.csv"),
                              root=str(root)).records())
    assert [getattr(item, "reason", "record") for item in items] == ["record", "outside_root"]


def test_a_sigma_beyond_float32_is_skipped_not_stored_as_inf(tmp_path):
    _touch(tmp_path, "a.jpg", "b.jpg")
    (tmp_path / "labels.csv").write_text("a.jpg,30,1e300\nb.jpg,1e39\n")
    items = list(make_adapter("generic_csv", labels=str(tmp_path / "labels.csv")).records())
    assert [item.reason for item in items] == ["bad_field", "bad_label"]
    assert "beyond the float32 range" in items[0].detail


# -- writers never follow a link out of their folder ---------------------------------------


def _plant(folder, name, target):
    os.symlink(target, folder / name)


def test_replacing_writers_replace_a_planted_link_and_leave_its_target_alone(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    for name in ("results.json", "config.yaml", "manifest.json"):
        _plant(folder, name, outside)
    # links planted at every fixed temporary name an older writer used
    for name in ("results.json.partial", "manifest.json.partial", "config.yaml.partial"):
        _plant(folder, name, outside)
    write_json(folder / "results.json", {"a": 1})
    write_json(folder / "manifest.json", {"b": 2})
    save_config(Experiment(), folder / "config.yaml")
    assert outside.read_text() == "precious"
    for name in ("results.json", "manifest.json", "config.yaml"):
        assert not (folder / name).is_symlink() and (folder / name).is_file()
    assert json.loads((folder / "manifest.json").read_text()) == {"b": 2}
    mode = stat.S_IMODE((folder / "results.json").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # like open(path, "w"), not mkstemp's 0600


def test_appending_writers_refuse_a_planted_link(tmp_path):
    outside = tmp_path / "outside.log"
    outside.write_text("precious")
    _plant(tmp_path, "train.log", outside)
    with pytest.raises(safe_io.UnsafePathError, match="symbolic link"):
        safe_io.open_append(tmp_path / "train.log")
    assert outside.read_text() == "precious"


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.json"
    write_json(target, {"old": True})
    with pytest.raises(TypeError):
        write_json(target, {"new": object()})
    assert json.loads(target.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["x.json"]


def test_a_folder_lock_refuses_a_second_writer_and_is_released(tmp_path):
    with safe_io.FolderLock(tmp_path / "out", "test build"):
        with pytest.raises(safe_io.FolderBusyError, match="another process right now"):
            with safe_io.FolderLock(tmp_path / "out", "second build"):
                pass
    with safe_io.FolderLock(tmp_path / "out", "third build"):
        pass
    assert os.listdir(tmp_path / "out") == []  # no lock file among the outputs
