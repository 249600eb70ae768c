"""Native libraries' own log lines, kept off the terminal.

FFmpeg, OpenCV and OpenVINO's frontends write straight to file descriptors 2 and 1 ("Invalid NAL unit
size", absl warnings on fd 2; OpenCV's FFmpeg log callback, with "HTTP error 404", on fd 1): dozens of
lines that bury vidprof's one-line errors and its summary. ``start()`` points both descriptors at a
private file and Python's ``sys.stdout``/``sys.stderr`` at the terminal's original ones, so vidprof's own
output still reaches the user (a terminal stays a terminal) while native lines are kept here: counted,
the last few remembered for the error messages and the report.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import threading
from collections import deque
from typing import TextIO

KEEP_LINES = 20
MAX_FILE_BYTES = 1 << 20  # the private file is emptied when it grows past this (a run can last for days)


class NativeLog:
    def __init__(self) -> None:
        self.lines = 0
        self.last: deque[str] = deque(maxlen=KEEP_LINES)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._saved: dict[int, int] = {}  # fd -> a duplicate of what it was
        self._saved_streams: tuple[TextIO, TextIO] | None = None
        self._offset = 0
        self._partial = b""

    @property
    def active(self) -> bool:
        return self._fd is not None

    def start(self) -> None:
        if self._fd is not None:
            return
        # OpenCV keeps FFmpeg quiet below errors by default, which hides "HTTP error 404": let warnings
        # through (they land in the private file, and the useful ones in error messages). Read when
        # OpenCV opens its first capture, so this must come before that.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "24")
        try:
            sys.stderr.flush()
            fd, path = tempfile.mkstemp(prefix="vidprof-native-", suffix=".log")
            os.unlink(path)  # private: gone with the process
            # O_APPEND: after the file is emptied, native writes land at its new end, not at a stale offset.
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        except OSError:
            return
        sys.stdout.flush()
        self._saved_streams = (sys.stdout, sys.stderr)
        for target in (1, 2):
            self._saved[target] = os.dup(target)
            os.dup2(fd, target)
        self._fd = fd
        # Python's own output goes to the original descriptors, line by line like a terminal's.
        sys.stdout = os.fdopen(os.dup(self._saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
        sys.stderr = os.fdopen(os.dup(self._saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")

    def collect(self) -> list[str]:
        """Lines written since the last call (also counted and remembered)."""
        if self._fd is None:
            return []
        with self._lock:
            try:
                data = os.pread(self._fd, MAX_FILE_BYTES * 2, self._offset)
            except OSError:
                return []
            self._offset += len(data)
            data = self._partial + data
            *complete, self._partial = data.split(b"\n")
            new = [ln.decode("utf-8", "replace").rstrip() for ln in complete if ln.strip()]
            self.lines += len(new)
            self.last.extend(new)
            if self._offset > MAX_FILE_BYTES:
                os.ftruncate(self._fd, 0)
                self._offset = 0
            return new

    def stop(self) -> None:
        """Put fds 1 and 2 and sys.stdout/sys.stderr back as they were."""
        if self._fd is None or self._saved_streams is None:
            return
        self.collect()
        own = (sys.stdout, sys.stderr)
        for stream in own:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for target, saved in self._saved.items():
            os.dup2(saved, target)
            os.close(saved)
        os.close(self._fd)
        sys.stdout, sys.stderr = self._saved_streams
        self._fd, self._saved, self._saved_streams = None, {}, None
        for stream in own:
            try:
                stream.close()
            except OSError:
                pass

    def summary(self) -> dict[str, object]:
        self.collect()
        return {"lines": self.lines, "last": list(self.last)}


LOG = NativeLog()


def recent_hint(since: int = 0, limit: int = 2) -> str:
    """The last native lines written, as a short parenthesis for an error message ('' if none).

    ``since``: the line count before the operation that failed, so older lines are not blamed on it."""
    LOG.collect()
    new = LOG.lines - since
    if new <= 0:
        return ""
    # OpenCV's "backend is generally available but can't be used" follows every failed open: it says nothing.
    lines = [ln for ln in list(LOG.last)[-new:] if "backend is generally available" not in ln][-limit:]
    if not lines:
        return ""
    lines = [ln.removeprefix("[OPENCV:FFMPEG:24] ").removeprefix("[OPENCV:FFMPEG:16] ") for ln in lines]
    text = "; ".join(ln if len(ln) <= 160 else ln[:157] + "..." for ln in lines)
    return f" (FFmpeg/OpenCV said: {text})"
