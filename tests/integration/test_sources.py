"""Sources and frame limits, with real OpenCV decode."""

from __future__ import annotations

import os

import pytest

from tests.conftest import CLIP_FRAMES, CLIP_H, CLIP_W
from tests.integration.pipeline_helpers import run_pipeline
from vidprof.pipeline.config import Injection
from vidprof.profiling.errors import RunError, UsageError
from vidprof.stages.sources import open_source, parse_synthetic, source_kind


@pytest.mark.parametrize("spec, kind", [
    ("synthetic:640x480@30", "synthetic"), ("0", "camera"), ("/dev/video2", "camera"),
    ("rtsp://cam.local/stream", "url"), ("udp://127.0.0.1:5000", "url"), ("http://x/y.mjpg", "url"),
    ("frames/*.png", "images"), ("clip.mp4", "file"),
])
def test_source_kinds(spec: str, kind: str) -> None:
    assert source_kind(spec) == kind


def test_synthetic_spec() -> None:
    assert parse_synthetic("synthetic:1280x720@30") == (1280, 720, 30.0)
    assert parse_synthetic("synthetic:64x48") == (64, 48, 30.0)
    with pytest.raises(UsageError, match="expected synthetic:WIDTHxHEIGHT"):
        parse_synthetic("synthetic:big")


def test_file_ends_at_end_of_stream(clip: str) -> None:
    src = open_source(clip)
    n = 0
    while (f := src.read()) is not None:
        assert f.shape == (CLIP_H, CLIP_W, 3)
        n += 1
    assert n == CLIP_FRAMES


def test_loop_and_frame_limit(clip: str, detector: str) -> None:
    _, rep, _ = run_pipeline(sources=(clip,), model=detector, loop=True, frames=CLIP_FRAMES * 2 + 5, preprocess="host")
    assert rep["frames"]["completed"] == CLIP_FRAMES * 2 + 5


def test_duration_limit(detector: str) -> None:
    _, rep, _ = run_pipeline(sources=("synthetic:160x120@30",), model=detector, duration=0.5, preprocess="host")
    assert 0 < rep["frames"]["completed"]
    assert rep["wall_seconds"] < 5


def test_image_folder_and_glob(images_dir: str, detector: str) -> None:
    _, rep, _ = run_pipeline(sources=(images_dir,), model=detector)
    assert rep["frames"]["completed"] == 5
    _, rep, _ = run_pipeline(sources=(os.path.join(images_dir, "img_0[0-2].png"),), model=detector, preprocess="host")
    assert rep["frames"]["completed"] == 3


@pytest.mark.parametrize("placement", ["separate", "fused", "host"])
def test_synthetic_source_feeds_every_placement(detector: str, placement: str) -> None:
    _, rep, _ = run_pipeline(sources=("synthetic:160x120@30",), model=detector, frames=12, preprocess=placement)
    assert rep["frames"] == {"completed": 12, "dropped": 0, "failed": 0, "read": 12}


def test_synthetic_default_length_is_ten_seconds_of_frames(detector: str) -> None:
    runner, rep, _ = run_pipeline(sources=("synthetic:64x64@6",), model=detector, preprocess="host")
    assert runner.parts.streams[0].frame_limit == 60 and rep["frames"]["completed"] == 60


def test_live_source_drops_oldest_instead_of_queueing(detector: str) -> None:
    """A source paced at 200 FPS into a 50 FPS preprocess: frames are dropped, the backlog stays bounded,
    and every frame read is either completed or dropped."""
    _, rep, reg = run_pipeline(sources=("synthetic:160x120@200",), model=detector, realtime=True, frames=100,
                                    preprocess="host", inject=(Injection("preprocess", 0.02),), pipeline_name="test")
    f = rep["frames"]
    assert f["dropped"] > 20
    assert f["completed"] + f["dropped"] == 100
    assert f["failed"] == 0
    assert reg.get_sample_value("vidprof_frames_total", {"pipeline": "test", "stream": "0", "outcome": "dropped"}) \
        == f["dropped"]
    # The oldest are dropped, so what completes waited at most ~2 queue slots plus one frame in preprocess.
    assert rep["waits"]["preprocess"]["max"] < 0.2


def test_pacing_is_not_counted_as_decode(detector: str) -> None:
    """--realtime waits for each frame's time before decoding: the wait shows in wall time, not decode."""
    _, rep, _ = run_pipeline(sources=("synthetic:160x120@50",), model=detector, realtime=True, frames=20,
                             preprocess="host")
    assert rep["frames"]["completed"] == 20
    assert rep["wall_seconds"] >= 19 / 50
    assert rep["stages"]["decode"]["p50"] < 0.005
    assert rep["busy"]["decode"] < 0.2


@pytest.mark.parametrize("spec, fragment", [
    ("missing.mp4", "no such file"),
    ("rtsp://127.0.0.1:1/none", "cannot open source"),
])
def test_unopenable_sources(spec: str, fragment: str) -> None:
    with pytest.raises(RunError, match=fragment):
        open_source(spec)


def test_a_file_that_is_not_a_video(tmp_path) -> None:
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 100)
    with pytest.raises(RunError, match="expected"):
        open_source(str(p))
