"""Writing files that are complete, stay inside their folder, and are not written twice at once.

Every writer of the project (data_prep, training, export) goes through these helpers:

- :func:`atomic_file` / :func:`atomic_path` write under a fresh temporary name in the
  target's folder and rename it onto the target when complete. The temporary file is
  created with ``O_CREAT | O_EXCL`` (``tempfile.mkstemp``), which never opens an existing
  file or follows a symbolic link, and ``os.replace`` replaces a link planted at the
  target itself, not the file it points to. So a reader sees the old file or the whole
  new one, and nothing outside the folder is ever written through a link.
- :func:`open_append` appends to a log file, refusing a symbolic link (``O_NOFOLLOW``).
- :func:`FolderLock` holds an exclusive ``flock`` on the output folder itself so that two
  processes never write one output folder at the same time (no lock file is left).
- :func:`make_readable` sets 0755 on folders and 0644 on files, so that a server running
  as another user (TensorFlow Serving) can read an export.

Files are created with mode ``0666 & ~umask`` like ``open(path, "w")`` does, unless a
mode is given.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from typing import IO, Iterator, Optional

FILE_MODE, DIR_MODE = 0o644, 0o755


class UnsafePathError(OSError):
    """A path a writer refuses: a symbolic link where a file of its own should be."""


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock."""


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_prefix(path: str) -> str:
    """The prefix of the temporary names :func:`atomic_path` uses for ``path``."""
    return f".{os.path.basename(path)}.partial-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: Optional[int] = None,
                suffix: str = "") -> Iterator[str]:
    """A fresh temporary path beside ``path``; renamed onto ``path`` when the block succeeds.

    For writers that take a file name (HDF5, TFRecordWriter, OpenCV). The temporary file
    already exists (empty, created exclusively) when the block starts; on an exception it
    is removed and ``path`` is untouched.

    Args:
      path: the final file.
      mode: permission bits of the final file (default ``0666 & ~umask``).
      suffix: ending of the temporary name (some writers check it, e.g. ``.weights.h5``).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=suffix,
                                         dir=folder)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, _default_mode() if mode is None else mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, text: bool = True, mode: Optional[int] = None,
                **open_args) -> Iterator[IO]:
    """An open file (text by default) whose content replaces ``path`` when the block succeeds.

    ``open_args`` go to ``open`` (``encoding`` defaults to UTF-8 for text, ``newline`` may
    be given).
    """
    if text:
        open_args.setdefault("encoding", "utf-8")
    with atomic_path(path, mode) as temporary:
        with open(temporary, "w" if text else "wb", **open_args) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def remove_temporaries(path: str | os.PathLike) -> list[str]:
    """Delete the temporary files a killed :func:`atomic_path` left for ``path``.

    Only safe while no other process writes ``path`` (hold the folder's lock).

    Returns:
      The names removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = temporary_prefix(path)
    removed = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.startswith(prefix):
            target = os.path.join(folder, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                os.remove(target)
            removed.append(name)
    return removed


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_append(path: str | os.PathLike) -> IO:
    """``path`` opened for appending text (created if missing); never through a link.

    Raises:
      UnsafePathError: ``path`` is a symbolic link (the message says where it points).
    """
    path = os.fspath(path)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                             0o666)
    except OSError as error:
        if error.errno == errno.ELOOP or os.path.islink(path):
            raise refuse_link(path) from None
        raise
    return os.fdopen(descriptor, "a", encoding="utf-8")


def refuse_link(path: str) -> UnsafePathError:
    """The error for a symbolic link found where a writer's own file belongs."""
    return UnsafePathError(
        f"{path} is a symbolic link (to {os.readlink(path)!r}); tfdldl never writes through "
        "a link out of its own folder. Remove the link (rm) and run again")


def make_readable(root: str | os.PathLike) -> None:
    """Give ``root`` and everything under it 0755 (folders) / 0644 (files); links untouched."""
    root = os.fspath(root)
    os.chmod(root, DIR_MODE)
    for folder, folders, files in os.walk(root):
        for name in folders:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), DIR_MODE)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), FILE_MODE)


class FolderLock:
    """An exclusive lock on an output folder, held while a process writes into it.

    ``with FolderLock(folder, "data_prep.build"):`` creates ``folder`` if needed and
    ``flock``s the folder itself without waiting. The kernel releases the lock when the
    process ends, killed or not, so nothing stale ever blocks a rerun, and no lock file
    appears among the outputs.

    Raises:
      FolderBusyError: another process (or another FolderLock of this one) holds the lock.
    """

    def __init__(self, folder: str | os.PathLike, what: str):
        self.folder = os.path.abspath(os.fspath(folder))
        self.what = what
        self._descriptor: Optional[int] = None

    def __enter__(self) -> "FolderLock":
        import fcntl

        os.makedirs(self.folder, exist_ok=True)
        descriptor = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise FolderBusyError(
                f"{self.folder} is being written by another process right now; two writers "
                f"would mix or delete each other's files. Wait for it to finish, or give "
                f"this {self.what} another output folder") from None
        self._descriptor = descriptor
        return self

    def __exit__(self, *exc) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing releases the flock
            self._descriptor = None
