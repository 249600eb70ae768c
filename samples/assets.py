"""The embedded default: a sample model and clip, made locally on first use and cached.

Nothing is downloaded. The cache lives in ``$XDG_CACHE_HOME/vidprof`` (``~/.cache/vidprof``
when unset); files are written atomically so two first runs at once do not clash.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import openvino as ov

from vidprof.samples.clip import write_clip
from vidprof.samples.model import DetectorSpec, build_detector

# Bump when the generators change, so stale caches are not reused.
ASSET_VERSION = "1"
SAMPLE_CLIP_FRAMES = 300  # 10 s at 30 FPS
RANDOM_WEIGHTS_NOTE = ("the sample model's weights are random: it costs what a real detector of its size costs, "
                       "its detections mean nothing")


def cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "vidprof", f"samples-v{ASSET_VERSION}")


def _say(message: str) -> None:
    print(f"vidprof: {message}", file=sys.stderr, flush=True)


@contextmanager
def _making(what: str, path: str, say: Callable[[str], None] | None) -> Iterator[None]:
    """Say what is being made, where, and that it happens once, before the wait rather than after it: the
    first run otherwise sits silent for seconds."""
    say = say or _say
    say(f"first use: making {what} at {path} (once; later runs reuse it)")
    t0 = time.monotonic()
    yield
    say(f"made {os.path.basename(path)} in {time.monotonic() - t0:.1f} s")


def sample_model_path(say: Callable[[str], None] | None = None) -> str:
    """The sample detector's .xml (its .bin beside it), built on first use. ``say``: where the note that it
    is being built goes (stderr by default)."""
    path = os.path.join(cache_dir(), "sample_detector.xml")
    if not os.path.exists(path):
        with _making("the sample model (a random-weights detector)", path, say):
            os.makedirs(cache_dir(), exist_ok=True)
            tmp = tempfile.mkdtemp(dir=cache_dir())
            tmp_xml = os.path.join(tmp, "sample_detector.xml")
            ov.save_model(build_detector(DetectorSpec()), tmp_xml, compress_to_fp16=False)
            # The .bin goes first so a reader that sees the .xml always finds its weights.
            os.replace(os.path.join(tmp, "sample_detector.bin"), os.path.join(cache_dir(), "sample_detector.bin"))
            os.replace(tmp_xml, path)
            os.rmdir(tmp)
    return path


def sample_clip_path(say: Callable[[str], None] | None = None) -> str:
    """The sample clip (10 s of 1280x720 at 30 FPS), written on first use; ``say`` as for the model."""
    path = os.path.join(cache_dir(), "sample_720p.mp4")
    if not os.path.exists(path):
        with _making(f"the sample clip ({SAMPLE_CLIP_FRAMES // 30} s of 1280x720, written with OpenCV)", path, say):
            write_clip(path, 1280, 720, SAMPLE_CLIP_FRAMES, 30.0)
    return path
