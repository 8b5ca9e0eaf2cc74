"""libjpeg's warnings about corrupt JPEG data, which OpenCV's decoder never reports.

libjpeg prints its warnings ("Corrupt JPEG data: premature end of data segment") to the
process's stderr and OpenCV decodes on, returning a partly grey picture; the only place
to see them is file descriptor 2. :func:`capture_warnings` sends it, for one call, to a
scratch file (one per process, reused), one call at a time (a lock), and gives any other
output printed meanwhile (another thread's) back to stderr. tfdldl.image_io refuses a
JPEG that libjpeg warned about.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Callable, TypeVar

# The start of every libjpeg warning about the image data.
LIBJPEG_WARNING = b"Corrupt JPEG data"

_STDERR_LOCK = threading.Lock()
_capture: dict[int, object] = {}
_Result = TypeVar("_Result")


def capture_warnings(call: Callable[[], _Result]) -> tuple[_Result, list[str]]:
    """``call()`` with file descriptor 2 captured.

    Args:
      call: a function of no arguments, e.g. one OpenCV decode.
    Returns:
      (its result, the lines starting with :data:`LIBJPEG_WARNING` it printed, as text;
      [] when none).
    Raises:
      Whatever ``call`` raises (stderr restored first; nothing printed is given back).
    """
    with _STDERR_LOCK:
        capture = _capture.get(os.getpid())
        if capture is None:
            capture = _capture[os.getpid()] = tempfile.TemporaryFile()
        capture.seek(0)
        capture.truncate()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            result = call()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        printed = os.pread(capture.fileno(), 1 << 16, 0)
    lines = printed.splitlines()
    warnings = [line for line in lines if line.startswith(LIBJPEG_WARNING)]
    others = [line for line in lines if not line.startswith(LIBJPEG_WARNING)]
    if others:  # another thread's output: give it back to stderr
        os.write(2, b"\n".join(others) + b"\n")
    return result, [line.decode("utf-8", "replace") for line in warnings]
