import pytest

from vidprof.pipeline.build import cache_state, default_pipeline_name


@pytest.mark.parametrize("cache_dir, before, after, state", [
    (None, set(), set(), "off"),
    ("/c", set(), {"a.blob"}, "miss"),
    ("/c", {"a.blob"}, {"a.blob"}, "hit"),
    ("/c", {"a.blob"}, {"a.blob", "b.blob"}, "miss"),
    ("/c", set(), set(), "off"),  # a device that exports nothing: no cache in use
])
def test_cache_state(cache_dir, before, after, state: str) -> None:
    assert cache_state(cache_dir, before, after) == state


@pytest.mark.parametrize("source, name", [
    (None, "sample"), ("synthetic:640x480@30", "synthetic"), ("0", "camera0"), ("/dev/video2", "camera2"),
    ("rtsp://user:pw@Cam.Local:554/stream1", "cam.local:554"), ("/data/door cam.mp4", "door_cam"),
])
def test_default_pipeline_name_is_label_safe(source, name: str) -> None:
    assert default_pipeline_name(source) == name
