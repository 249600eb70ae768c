"""Shared fixtures: small generated clips and models, so real OpenCV and OpenVINO stay fast."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from vidprof.samples.clip import write_clip
from vidprof.samples.model import DetectorSpec, build_classifier, build_detector, build_ssd

CLIP_FRAMES = 24
CLIP_W, CLIP_H = 160, 120


@pytest.fixture(scope="session")
def assets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("assets")


@pytest.fixture(scope="session")
def clip(assets_dir: Path) -> str:
    """A 160x120 mp4v clip of exactly CLIP_FRAMES frames."""
    return write_clip(str(assets_dir / "clip.mp4"), CLIP_W, CLIP_H, CLIP_FRAMES, 30.0)


def save(model: ov.Model, path: Path) -> str:
    ov.save_model(model, str(path), compress_to_fp16=False)
    return str(path)


@pytest.fixture(scope="session")
def detector(assets_dir: Path) -> str:
    """A small detector: 64x64 NCHW f32 input, boxes [1,48,4] + scores [1,48,4]."""
    return save(build_detector(DetectorSpec(height=64, width=64, width_mult=0.25)), assets_dir / "det.xml")


@pytest.fixture(scope="session")
def make_model(assets_dir: Path) -> Callable[..., str]:
    """Build and save a detector variant (layout, element type, size, dynamic batch)."""
    def make(**kw: object) -> str:
        spec = DetectorSpec(**{"height": 64, "width": 64, "width_mult": 0.25, **kw})  # type: ignore[arg-type]
        name = "det_" + "_".join(f"{k}{v}" for k, v in sorted(kw.items())) + ".xml"
        path = assets_dir / name
        return str(path) if path.exists() else save(build_detector(spec), path)
    return make


@pytest.fixture(scope="session")
def classifier(assets_dir: Path) -> str:
    return save(build_classifier(), assets_dir / "cls.xml")


@pytest.fixture(scope="session")
def ssd(assets_dir: Path) -> str:
    return save(build_ssd(), assets_dir / "ssd.xml")


@pytest.fixture(scope="session")
def two_input_model(assets_dir: Path) -> str:
    import openvino.opset13 as ops
    a = ops.parameter([1, 3, 32, 32], ov.Type.f32, name="a")
    b = ops.parameter([1, 3, 32, 32], ov.Type.f32, name="b")
    return save(ov.Model([ops.result(ops.add(a, b))], [a, b], "two_inputs"), assets_dir / "two.xml")


@pytest.fixture(scope="session")
def images_dir(assets_dir: Path) -> str:
    import cv2
    folder = assets_dir / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(folder / f"img_{i:02d}.png"), rng.integers(0, 255, (CLIP_H, CLIP_W, 3), dtype=np.uint8))
    return str(folder)


@pytest.fixture(scope="session")
def vidprof_cmd() -> list[str]:
    """The installed console script: CLI tests run what a user runs, from outside the repository."""
    # The script next to this interpreter is the one `pip install .` just made; PATH may hold a stale one.
    beside = Path(sys.executable).parent / "vidprof"
    exe = str(beside) if beside.exists() else shutil.which("vidprof")
    if exe is None:
        pytest.fail("the `vidprof` console script is not installed; run `pip install '.[test]'` first")
    return [exe]


@pytest.fixture
def run_cli(vidprof_cmd: list[str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run vidprof as a subprocess in a scratch folder, with a private sample cache."""
    def run(*args: str, timeout: float = 180, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path.parent / "xdg-cache"), **(env or {})}
        return subprocess.run([*vidprof_cmd, *args], cwd=tmp_path, env=full_env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    return run


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
