"""Frame sources: video files, cameras, network streams, image folders and a synthetic pattern.

A source hands out BGR u8 frames (HxWx3) until it returns None at the end of the
stream. ``live`` sources (cameras, URLs, paced sources) produce frames whether or
not the pipeline keeps up, so the runner drops rather than queues behind them.
"""

from __future__ import annotations

import glob
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from vidprof.profiling.errors import RunError, UsageError
from vidprof.profiling.native_log import LOG, recent_hint

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
URL_SCHEMES = ("rtsp://", "rtsps://", "udp://", "tcp://", "http://", "https://", "rtmp://")
_SYNTHETIC = re.compile(r"^synthetic:(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?$")


class SourceLost(Exception):
    """A live source stopped delivering: the server ended the stream, or no frame came within the read
    timeout. The stream worker reconnects (or, with --no-reconnect, ends the stream as a fault)."""


# A damaged stretch of a file makes OpenCV's read() fail frame after frame and then succeed again; at the
# real end it fails for good. Up to this many failed reads in a row are tried before taking it as the end
# (failed reads at the end of a file cost microseconds).
MAX_DAMAGED_RUN = 300


@dataclass(frozen=True)
class SourceOptions:
    loop: bool = False
    # FFmpeg's own default is 30 s for both: a stalled stream would block the run (and --duration, and
    # Ctrl-C) that long. OpenCV takes these only when the capture is opened.
    open_timeout: float = 5.0
    read_timeout: float = 5.0

    def __post_init__(self) -> None:
        for flag, v in (("--open-timeout", self.open_timeout), ("--read-timeout", self.read_timeout)):
            if not (math.isfinite(v) and 0 < v <= 600):
                raise UsageError(f"{flag} {v}: expected a number of seconds between 0 and 600, e.g. 5")


class Source(Protocol):
    description: str
    kind: str  # the name of its SourceKind: file | camera | url | images | synthetic
    live: bool
    fps: float | None
    width: int
    height: int

    def wait(self) -> int | None:
        """Block until the next frame is due (paced sources); the time is not counted as decode.

        Returns the frames a camera would have delivered while the reader was late (and the pipeline never
        saw): the caller counts them as dropped. None or 0: none."""
        ...

    def read(self) -> np.ndarray | None:
        """The next frame; None at the end of a file; raises SourceLost when a live source stops."""
        ...

    def take_damaged(self) -> int:
        """Frames that could not be decoded since the last call (a damaged file): counted as failed."""
        ...

    def reopen(self) -> None:
        """Connect a live source again after SourceLost; raises RunError if it cannot."""
        ...

    def close(self) -> None: ...


class _NoRecovery:
    """For sources that are never damaged mid-stream and never lost."""

    def take_damaged(self) -> int:
        return 0

    def reopen(self) -> None:
        raise RunError("this source cannot be reopened")


class SyntheticSource(_NoRecovery):
    """A generated test pattern: no decode cost, for inference-bound runs.

    A few frames are made up front and handed out in turn (the same arrays, never
    written to), so reading costs nothing measurable. They stay writable-flagged only
    because OpenVINO refuses to share read-only numpy memory.
    """

    kind = "synthetic"

    def __init__(self, width: int, height: int, fps: float) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.live = False
        self.description = f"synthetic:{width}x{height}@{fps:g}"
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        base = np.empty((height, width, 3), np.uint8)
        base[..., 0] = ramp.astype(np.uint8)
        base[..., 1] = np.linspace(0, 255, height, dtype=np.float32).astype(np.uint8)[:, None]
        base[..., 2] = 128
        self._frames = []
        side = max(8, min(width, height) // 6)
        for i in range(8):
            f = base.copy()
            x = (i * width // 8) % max(1, width - side)
            y = (i * height // 8) % max(1, height - side)
            f[y:y + side, x:x + side] = (255, 255, 255)
            self._frames.append(f)
        self._i = 0

    def wait(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        f = self._frames[self._i % len(self._frames)]
        self._i += 1
        return f

    def close(self) -> None:
        pass


class CaptureSource:
    """Anything OpenCV's VideoCapture opens: a file, a camera, a network URL."""

    def __init__(self, target: str | int, kind: str, description: str, opts: SourceOptions | None = None) -> None:
        self.kind = kind
        self.description = description
        self.live = kind in ("camera", "url")
        self._opts = opts or SourceOptions()
        self._loop = self._opts.loop and kind == "file"
        self._target = target
        self._damaged = 0  # not yet handed out by take_damaged()
        self._damaged_seen = 0
        self._cap = self._open()
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            what = {"file": "a video file OpenCV's FFmpeg backend can decode",
                    "camera": "a camera that delivers frames",
                    "url": f"a stream that delivers a frame within --open-timeout {self._opts.open_timeout:g} s"}[kind]
            raise RunError(f"source {description}: opened but no frame could be decoded; expected {what}; "
                           f"check the file/stream with `ffprobe` or try another source{recent_hint(self._log_mark)}")
        self.height, self.width = first.shape[:2]
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and fps < 1000 else None
        self._frame_count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT) if kind == "file" else 0.0
        self._pending: np.ndarray | None = None
        if kind == "file":
            # Reopen, so frame 0 is decoded (and timed) like every other frame, not handed out pre-read.
            self._cap.release()
            self._cap = self._open()
        else:
            self._pending = first  # a live source cannot rewind: hand out the probe frame

    def _open(self) -> cv2.VideoCapture:
        self._log_mark = LOG.lines  # native lines from here on are about this source
        if self.kind == "url":
            ms = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self._opts.open_timeout * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self._opts.read_timeout * 1000)]
            cap = cv2.VideoCapture(self._target, cv2.CAP_FFMPEG, ms)
        else:
            cap = cv2.VideoCapture(self._target)
        if not cap.isOpened():
            hint = {"file": "expected a readable video file (mp4, mkv, avi, ...); check the path and format",
                    "camera": "expected a connected camera; check the index or /dev/videoN and permissions",
                    "url": f"expected a stream that answers within --open-timeout {self._opts.open_timeout:g} s; "
                           "check the URL, that the server or sender is running, network and credentials"}[self.kind]
            raise RunError(f"cannot open source {self.description}: {hint}{recent_hint(self._log_mark)}")
        if self.live:
            # Keep the driver's own buffer small: stale frames inflate latency.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def wait(self) -> None:
        pass  # a camera's grab blocks until the device delivers: that wait is part of decode

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            f, self._pending = self._pending, None
            return f
        ok, f = self._cap.read()
        if ok:
            return f
        if self.live:
            raise SourceLost(f"no frame within --read-timeout {self._opts.read_timeout:g} s, or the stream ended"
                             f"{recent_hint(self._log_mark)}")
        if self._loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, f = self._cap.read()
            return f if ok else None
        f = self._past_damage()
        if f is None:
            self._count_missing_at_end()
        return f

    def _past_damage(self) -> np.ndarray | None:
        """After a failed read in a file: the end, or a damaged stretch with good frames after it."""
        misses = 1
        while misses < MAX_DAMAGED_RUN:
            if 0 < self._frame_count <= self._cap.get(cv2.CAP_PROP_POS_FRAMES):
                return None  # every frame the container lists was read: the real end
            ok, f = self._cap.read()
            if ok:
                self._damaged += misses  # only now known to be damage, not the end
                self._damaged_seen += misses
                return f
            misses += 1
        return None

    def _count_missing_at_end(self) -> None:
        """At the end of a file, frames its container lists but nobody could decode are damaged too.

        One failed read can swallow several damaged packets, and a truncated file fails only at its end,
        so the container's frame count settles the number. It is an estimate in some containers (from
        duration x FPS), so a clean file's shortfall of a frame or two is not called damage."""
        decoded = self._cap.get(cv2.CAP_PROP_POS_FRAMES)  # OpenCV counts the frames it decoded
        missing = int(self._frame_count - decoded - self._damaged_seen)
        if missing > 0 and (self._damaged_seen or missing > max(2, 0.01 * self._frame_count)):
            self._damaged += missing
            self._damaged_seen += missing

    def take_damaged(self) -> int:
        n, self._damaged = self._damaged, 0
        return n

    def reopen(self) -> None:
        self._cap.release()
        self._cap = self._open()

    def close(self) -> None:
        self._cap.release()


class ImageSource(_NoRecovery):
    """A folder or glob of images, read in name order."""

    kind = "images"

    def __init__(self, paths: Sequence[str], description: str, loop: bool = False) -> None:
        self._paths = list(paths)
        self.description = description
        self.live = False
        self.fps = None
        self._loop = loop
        self._i = 0
        first = self._load(self._paths[0])
        self.height, self.width = first.shape[:2]
        self._pending: np.ndarray | None = first

    @staticmethod
    def _load(path: str) -> np.ndarray:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise RunError(f"cannot decode image {path}: expected a JPEG/PNG/BMP/TIFF/WebP file; remove or replace it")
        return img

    def wait(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            self._i = 1
            f, self._pending = self._pending, None
            return f
        if self._i >= len(self._paths):
            if not self._loop:
                return None
            self._i = 0
        path = self._paths[self._i]
        self._i += 1
        return self._load(path)

    def close(self) -> None:
        pass


class PacedSource:
    """Delivers another source's frames no faster than its nominal FPS, like a camera."""

    def __init__(self, inner: Source, fps: float) -> None:
        self._inner = inner
        self.kind, self.description = inner.kind, f"{inner.description} (paced at {fps:g} FPS)"
        self.width, self.height, self.fps = inner.width, inner.height, fps
        self.live = True
        self._period = 1.0 / fps
        self._next: float | None = None

    def wait(self) -> int:
        now = time.monotonic()
        missed = 0
        if self._next is None:
            self._next = now
        elif now < self._next:
            time.sleep(self._next - now)
        else:
            # Late by several periods: a camera delivered those frames meanwhile and nobody took them. They
            # are dropped frames, not frames that never existed (one period of credit is kept, as below).
            missed = max(0, int((now - self._next) / self._period) - 1)
        # Never bank more than one period of credit after a stall, or frames would then burst.
        self._next = max(self._next + self._period, time.monotonic() - self._period)
        return missed

    def read(self) -> np.ndarray | None:
        return self._inner.read()

    def take_damaged(self) -> int:
        return self._inner.take_damaged()

    def reopen(self) -> None:
        self._inner.reopen()

    def close(self) -> None:
        self._inner.close()


def parse_synthetic(spec: str) -> tuple[int, int, float] | None:
    """``synthetic:WxH[@FPS]`` -> (w, h, fps); None when ``spec`` is not synthetic."""
    if not spec.startswith("synthetic:"):
        return None
    m = _SYNTHETIC.match(spec)
    if not m:
        raise UsageError(f"--source {spec!r}: expected synthetic:WIDTHxHEIGHT[@FPS], e.g. synthetic:1280x720@30")
    w, h = int(m.group(1)), int(m.group(2))
    fps = float(m.group(3)) if m.group(3) else 30.0
    if not (16 <= w <= 8192 and 16 <= h <= 8192) or fps <= 0:
        raise UsageError(f"--source {spec!r}: expected a size of 16..8192 pixels per side and an FPS above 0, "
                         "e.g. synthetic:1280x720@30")
    return w, h, fps


def _is_camera(spec: str) -> bool:
    return spec.isdigit() or re.fullmatch(r"/dev/video\d+", spec) is not None


def _is_url(spec: str) -> bool:
    return spec.lower().startswith(URL_SCHEMES)


def _names_images(spec: str) -> bool:
    return os.path.isdir(spec) or any(c in spec for c in "*?[")


def _is_file(spec: str) -> bool:
    # An existing file wins before the glob test: "clip[1].mp4" is a file, not a pattern. Anything that names
    # neither a folder nor a pattern is taken as a file too, so a missing path gets the "no such file" message.
    return os.path.isfile(spec) or not _names_images(spec)


def _open_synthetic(spec: str, opts: SourceOptions) -> Source:
    parsed = parse_synthetic(spec)
    assert parsed is not None  # the kind matched on the "synthetic:" prefix
    return SyntheticSource(*parsed)  # endless: looping changes nothing


def _open_camera(spec: str, opts: SourceOptions) -> Source:
    return CaptureSource(int(spec) if spec.isdigit() else spec, "camera", f"camera {spec}", opts)


def _open_url(spec: str, opts: SourceOptions) -> Source:
    return CaptureSource(spec, "url", spec, opts)


def _open_file(spec: str, opts: SourceOptions) -> Source:
    # Checked before OpenCV, so a missing path and an unreadable one each get their own message.
    if not os.path.exists(spec):
        raise RunError(f"source {spec}: no such file; expected a video file, camera index, URL, image folder "
                       "or synthetic:WxH@FPS")
    if not os.access(spec, os.R_OK):
        raise RunError(f"source {spec}: file is not readable; check its permissions")
    return CaptureSource(spec, "file", spec, opts)


def _open_images(spec: str, opts: SourceOptions) -> Source:
    pattern = os.path.join(spec, "*") if os.path.isdir(spec) else spec
    paths = sorted(p for p in glob.glob(pattern) if p.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise RunError(f"source {spec}: expected image files ({', '.join(IMAGE_EXTENSIONS)}), found none; "
                       "check the folder or glob")
    return ImageSource(paths, spec, opts.loop)


@dataclass(frozen=True)
class SourceKind:
    """One kind of ``--source``: how a spec is recognised and how it is opened.

    ``live`` kinds deliver frames at the device's own pace; they cannot be re-paced or looped.
    """

    name: str
    matches: Callable[[str], bool]
    open: Callable[[str, SourceOptions], Source]
    live: bool


# Tried in order, first match wins: the prefixes first (a "synthetic:..." or URL is never a path), then a file
# before images, so an existing "clip[1].mp4" is not read as a glob. Adding a kind is one entry and its opener.
SOURCE_KINDS: tuple[SourceKind, ...] = (
    SourceKind("synthetic", lambda spec: spec.startswith("synthetic:"), _open_synthetic, live=False),
    SourceKind("camera", _is_camera, _open_camera, live=True),
    SourceKind("url", _is_url, _open_url, live=True),
    SourceKind("file", _is_file, _open_file, live=False),
    SourceKind("images", _names_images, _open_images, live=False),
)


def find_kind(spec: str) -> SourceKind:
    for kind in SOURCE_KINDS:
        if kind.matches(spec):
            return kind
    # Unreachable with today's table ("file" takes whatever is not a folder or pattern); kept so a
    # table edit that leaves a gap fails with a message, not a StopIteration.
    raise UsageError(f"--source {spec!r}: matches no source kind; expected a video file, camera index, URL, "
                     "image folder or synthetic:WxH@FPS")


def source_kind(spec: str) -> str:
    return find_kind(spec).name


def _check_pace(spec: str, kind: SourceKind, fps: float) -> None:
    if not (math.isfinite(fps) and fps > 0):
        raise UsageError(f"--realtime-fps {fps}: expected a rate above 0 frames per second; "
                         "give a positive number such as 30")
    if kind.live:
        raise UsageError(f"--source {spec} is a {kind.name}: --realtime-fps applies to files, image folders and "
                         "synthetic sources; a camera or stream keeps its own pace, so drop --realtime-fps")


def open_source(spec: str, loop: bool = False, realtime: bool = False, fps: float | None = None,
                options: SourceOptions | None = None) -> Source:
    """Open the source named by ``spec``; raises a RunError a user can act on.

    ``realtime`` paces a non-live source at its own FPS (30 when it has none); ``fps`` paces it at that rate
    instead, and implies ``realtime``.
    """
    kind = find_kind(spec)
    if fps is not None:
        _check_pace(spec, kind, fps)  # before opening: a stream need not be reached to refuse the setting
    opts = options or SourceOptions(loop=loop)
    src = kind.open(spec, opts)
    if src.live:
        return src
    if fps is not None:
        return PacedSource(src, fps)
    if realtime:
        return PacedSource(src, src.fps or 30.0)
    return src
