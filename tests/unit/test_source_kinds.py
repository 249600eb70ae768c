"""The source-kind table: every kind is recognised from a spec of its own, and --realtime-fps paces or refuses."""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidprof.profiling.errors import UsageError
from vidprof.samples.clip import write_clip
from vidprof.stages.sources import SOURCE_KINDS, open_source, source_kind

KIND_NAMES = [k.name for k in SOURCE_KINDS]


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One real spec per kind. The clip's name has glob characters on purpose: an existing file must win
    over the images kind's pattern test. A kind added to the table without a spec here fails the tests."""
    root = tmp_path_factory.mktemp("sources")
    folder = root / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((24, 32, 3), 40 * i, np.uint8))
    return {
        "synthetic": "synthetic:64x48@30",
        "camera": "/dev/video7",
        "url": "rtsp://127.0.0.1:1/none",
        "file": write_clip(str(root / "clip[1].mp4"), 32, 24, 3, 30.0),
        "images": str(folder),
    }


def test_every_kind_has_a_spec(specs: dict[str, str]) -> None:
    assert sorted(specs) == sorted(KIND_NAMES)
    assert len(set(KIND_NAMES)) == len(KIND_NAMES)


@pytest.mark.parametrize("name", KIND_NAMES)
def test_kind_round_trips(specs: dict[str, str], name: str) -> None:
    assert source_kind(specs[name]) == name


@pytest.mark.parametrize("spec, kind", [
    ("0", "camera"), ("HTTP://x/y.mjpg", "url"), ("frames/*.png", "images"), ("img_0[0-2].png", "images"),
    ("missing.mp4", "file"),
])
def test_kind_of_specs_that_need_no_files(spec: str, kind: str) -> None:
    assert source_kind(spec) == kind


@pytest.mark.parametrize("name", [k.name for k in SOURCE_KINDS if not k.live])
def test_fps_paces_every_non_live_kind_at_that_rate(specs: dict[str, str], name: str) -> None:
    src = open_source(specs[name], loop=True, fps=5)
    try:
        assert src.kind == name and src.live and src.fps == 5
        assert "paced at 5 FPS" in src.description
    finally:
        src.close()


def test_fps_paces_a_synthetic_source_in_real_time() -> None:
    src = open_source("synthetic:64x48@1000", fps=5)
    t0 = time.monotonic()
    for _ in range(4):
        src.wait()
        assert src.read() is not None
    # The first frame is due at once, the next three 0.2 s apart: 0.6 s, whatever the source's own 1000 FPS.
    assert time.monotonic() - t0 >= 0.55
    src.close()


def test_fps_overrides_realtime_and_realtime_alone_keeps_the_own_rate() -> None:
    assert open_source("synthetic:64x48@50", realtime=True, fps=7).fps == 7
    assert open_source("synthetic:64x48@50", realtime=True).fps == 50
    unpaced = open_source("synthetic:64x48@50")
    assert not unpaced.live and unpaced.fps == 50


@pytest.mark.parametrize("name", [k.name for k in SOURCE_KINDS if k.live])
def test_fps_on_a_live_kind_is_refused_before_opening(specs: dict[str, str], name: str) -> None:
    # Nothing listens on these: reaching the open would be a RunError, not this UsageError.
    with pytest.raises(UsageError, match="a camera or stream keeps its own pace"):
        open_source(specs[name], fps=5)


@pytest.mark.parametrize("fps", [0, -1.0, math.nan, math.inf])
def test_fps_must_be_a_positive_rate(fps: float) -> None:
    with pytest.raises(UsageError, match=r"--realtime-fps .*expected a rate above 0"):
        open_source("synthetic:64x48@30", fps=fps)


def test_existing_file_with_glob_characters_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "clip[1].mp4"
    assert source_kind(str(path)) == "images"  # not there yet: a pattern
    path.write_bytes(b"")
    assert source_kind(str(path)) == "file"


def test_a_late_reader_of_a_paced_source_is_told_what_it_missed() -> None:
    """Paced like a camera at 100 FPS, a reader 105 ms late missed ~10 frames: they are reported, to be
    counted as dropped, not silently skipped."""
    import time as _time

    src = open_source("synthetic:64x64@100", realtime=True)
    assert not src.wait()
    src.read()
    _time.sleep(0.105)
    missed = src.wait()
    assert 8 <= missed <= 10, missed
    assert not src.wait()  # back on schedule
