"""INT8 from the user's own frames and ONNX Runtime beside OpenVINO, on a real trained model.

The model is PP-OCRv4's text detector, read out of the ``rapidocr-onnxruntime`` wheel (fetched from PyPI once
and cached; see ``real_model.py``); the clip is rendered moving text, so the detector finds text in every
frame and agreement between the original and its INT8 variant means something.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.real_model import DETECTOR_ARGS, Unavailable, fetch_model, write_text_clip
from vidprof.pipeline.accuracy import load_outputs
from vidprof.pipeline.optimize import evenly
from vidprof.samples import assets

CLIP_FRAMES = 48
CALIBRATION = 12
MEASURED = 36  # the sweep's --frames: of them, the calibration frames below 36 are left out of agreement
FAST = ("--model-only-seconds", "0.3", "--warmup", "1")


def _cache_folder() -> str:
    # vidprof's own cache folder, which outlives a fresh clone (a CI run downloads the wheel once per machine).
    return os.path.join(os.path.dirname(assets.cache_dir()), "test-models")


@pytest.fixture(scope="session")
def text_detector() -> str:
    try:
        return fetch_model(_cache_folder())
    except Unavailable as e:
        if os.environ.get("VIDPROF_REQUIRE_SERVERS"):
            pytest.fail(f"the real text detector is required (VIDPROF_REQUIRE_SERVERS) but could not be fetched: {e}")
        pytest.skip(f"the real text detector could not be fetched from PyPI ({e}); these tests need the registry")


@pytest.fixture(scope="session")
def text_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """256x128 (the detector wants sides in multiples of 32), CLIP_FRAMES frames of moving words."""
    return write_text_clip(str(tmp_path_factory.mktemp("text") / "text.mp4"), 256, 128, CLIP_FRAMES)


def _needs(module: str, extra: str) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed: install vidprof[{extra}] (the test extra has it)")


def test_the_text_detector_sees_the_rendered_text(run_cli, text_detector: str, text_clip: str,
                                                  tmp_path: Path) -> None:
    r = run_cli("run", "--source", text_clip, "--model", text_detector, *DETECTOR_ARGS, "--no-metrics", "--quiet",
                "--report", "run.json", "--dump-outputs", "out.npz", timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "run.json").read_text())
    assert rep["config"]["postprocess_decoder"] == "probability_map"
    boxes = [len(res) for _, res in load_outputs(str(tmp_path / "out.npz")).values()]
    # Four words are drawn on every frame (now and then two overlap): the detector finds text on each.
    assert len(boxes) == CLIP_FRAMES and min(boxes) >= 2 and max(boxes) <= 6


def test_int8_and_onnxruntime_beside_the_original(run_cli, text_detector: str, text_clip: str,
                                                  tmp_path: Path) -> None:
    _needs("nncf", "optimize")
    _needs("onnxruntime", "onnxruntime")
    common = ("--source", text_clip, "--model", text_detector, *DETECTOR_ARGS, "--frames", str(MEASURED),
              "--calibration-frames", str(CALIBRATION), *FAST)
    r = run_cli("tune", *common, "--grid", "model=original,int8", "--grid", "runtime=openvino,onnxruntime",
                "--report", "tune.json", "--csv", "tune.csv", timeout=900)
    assert r.returncode == 0, r.stderr
    assert "skipping model=int8,runtime=onnxruntime" in r.stderr  # an IR does not run on ONNX Runtime
    doc = json.loads((tmp_path / "tune.json").read_text())
    assert [s["config"] for s in doc["skipped"]] == [{"model": "int8", "runtime": "onnxruntime"}]
    rows = {(x["config"].get("model"), x["config"].get("runtime")): x for x in doc["results"] if not x["reference"]}
    assert set(rows) == {("original", "openvino"), ("int8", "openvino"), ("original", "onnxruntime")}
    for x in doc["results"]:
        assert x["status"] == "ok", x["error"]
        assert x["fps"] > 0 and x["model_only_fps"] > 0 and x["model_size_bytes"] > 0
    original, int8, ort = rows["original", "openvino"], rows["int8", "openvino"], rows["original", "onnxruntime"]

    # The INT8 variant: quantised layers really ran, it is smaller, and what quantising took is shown.
    assert int8["precision"].startswith("int8"), int8["precision"]
    assert int8["model_size_bytes"] < 0.8 * original["model_size_bytes"]
    assert int8["quantize_seconds"] > 0 and original["quantize_seconds"] is None
    variant = doc["models"]["int8"]
    assert variant["path"] == int8["model_path"] and os.path.exists(variant["path"]) and not variant["cached"]
    # Agreement on frames calibration did not see, and in a plausible range for a trained model: INT8 moves
    # the map's edges a little, never all of the text.
    seen = [i for i in evenly(CLIP_FRAMES, CALIBRATION) if i < MEASURED]
    acc = int8["accuracy"]
    assert acc["frames"] == MEASURED - len(seen) and acc["excluded_frames"] == len(seen)
    assert 0.8 <= acc["agreement"] < 1.0 and acc["map_iou"] == acc["agreement"], acc
    assert acc["box_f1"] >= 0.8, acc
    assert acc["changes_results"] == (acc["agreement"] < 0.99)

    # ONNX Runtime computes what OpenVINO's f32 reference does.
    assert ort["runtime"] == "onnxruntime" and ort["precision"] == "f32"
    assert ort["accuracy"]["agreement"] >= 0.99 and ort["accuracy"]["max_abs_diff"] < 1e-3, ort["accuracy"]
    assert original["accuracy"]["frames"] == MEASURED

    # Never recommended when it changes results; the front is over FPS, p99 and agreement.
    best = doc["results"][doc["recommended"]]
    assert not best["accuracy"]["changes_results"]
    assert "models" in r.stdout and "int8" in r.stdout
    with open(tmp_path / "tune.csv") as f:
        header = f.readline()
    assert "model_size_bytes" in header and "quantize_seconds" in header

    # A second sweep on the same inputs finds the variant in the cache instead of quantising again.
    again = run_cli("tune", *common, "--grid", "model=int8", "--report", "again.json", timeout=600)
    assert again.returncode == 0, again.stderr
    assert "found in the cache" in again.stderr and "quantising" not in again.stderr
    doc2 = json.loads((tmp_path / "again.json").read_text())
    assert doc2["models"]["int8"]["cached"] and doc2["models"]["int8"]["path"] == variant["path"]
    assert doc2["models"]["int8"]["quantize_seconds"] == variant["quantize_seconds"]


def test_optimize_writes_the_int8_model(run_cli, text_detector: str, text_clip: str, tmp_path: Path) -> None:
    _needs("nncf", "optimize")
    r = run_cli("optimize", "--source", text_clip, "--model", text_detector, "--mean", "127.5", "--scale", "127.5",
                "--calibration-frames", "6", "--preprocess", "host", "--output", "det_int8.xml", timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "det_int8.xml").exists() and (tmp_path / "det_int8.bin").exists()
    assert "INT8" in r.stdout and "on 6 frames" in r.stdout
    # The written model runs in a pipeline like any other.
    run = run_cli("run", "--source", text_clip, "--model", "det_int8.xml", *DETECTOR_ARGS, "--preprocess", "host",
                  "--frames", "8", "--no-metrics", "--quiet", timeout=300)
    assert run.returncode == 0, run.stderr


def test_a_calibration_the_source_cannot_fill_is_a_clear_error(run_cli, text_detector: str, text_clip: str) -> None:
    _needs("nncf", "optimize")
    r = run_cli("optimize", "--source", text_clip, "--model", text_detector, "--calibration-frames", "100",
                "--output", "x.xml", timeout=300)
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("vidprof: error:")]
    assert len(errors) == 1 and f"has {CLIP_FRAMES} frames, fewer than the 100" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("tune", "--source", text_clip, "--model", text_detector, "--grid", "model=original,int8",
                "--calibration-frames", "100", "--frames", "8", timeout=300)
    assert r.returncode == 1 and f"has {CLIP_FRAMES} frames, fewer than the 100" in r.stderr, r.stderr
    assert "tuning" not in r.stderr  # nothing ran


def test_missing_extras_name_the_extra(text_detector: str, text_clip: str, tmp_path: Path) -> None:
    """Without NNCF or ONNX Runtime installed (hidden here), the error names the pip extra to install."""
    def without(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
        code = (f"import sys; sys.modules[{module!r}] = None\n"
                "from vidprof.pipeline.cli import main\n"
                f"sys.exit(main({list(argv)!r}))")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path, stdin=subprocess.DEVNULL)

    r = without("nncf", "optimize", "--source", text_clip, "--model", text_detector, "--output", "x.xml")
    assert r.returncode == 2 and "pip install 'vidprof[optimize]'" in r.stderr, r.stderr
    r = without("onnxruntime", "run", "--source", text_clip, "--model", text_detector, "--runtime", "onnxruntime",
                "--preprocess", "host", "--frames", "2", "--no-metrics", "--quiet")
    assert r.returncode == 2 and "pip install 'vidprof[onnxruntime]'" in r.stderr, r.stderr


@pytest.mark.parametrize("sync, nireq", [(False, 2), (True, None)])
def test_onnxruntime_runs_the_pipeline(text_detector: str, text_clip: str, sync: bool, nireq: int | None) -> None:
    _needs("onnxruntime", "onnxruntime")
    from prometheus_client import CollectorRegistry

    from vidprof.pipeline.config import RunConfig
    from vidprof.pipeline.runner import Runner
    from vidprof.stages.inference import InferenceOptions, model_only_fps
    from vidprof.stages.preprocess import PreprocessOptions

    cfg = RunConfig(sources=(text_clip,), model=text_detector, runtime="onnxruntime", frames=12, warmup=1,
                    preprocess_options=PreprocessOptions(mean=(127.5,), scale=(127.5,)),
                    inference=InferenceOptions(nireq=nireq, sync=sync))
    runner = Runner(cfg, CollectorRegistry())
    runner.run()
    rep = runner.summary().report
    assert rep["frames"]["completed"] == 12 and rep["frames"]["failed"] == 0, rep["first_error"]
    resolved = rep["config"]["resolved"]
    assert resolved["runtime"].startswith("onnxruntime") and resolved["nireq"] == (1 if sync else 2)
    assert rep["config"]["postprocess_decoder"] == "probability_map"
    assert model_only_fps(runner.compiled, runner.nireq, runner.premade_input, 0.2, sync) > 0
