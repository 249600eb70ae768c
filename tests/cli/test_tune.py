"""vidprof tune end to end: real runs of real configurations on a small clip and model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from vidprof.pipeline.tuner import pareto, recommend

FAST = ["--model-only-seconds", "0.3", "--warmup", "1"]


def test_small_grid(run_cli, clip: str, detector: str, tmp_path: Path) -> None:
    r = run_cli("tune", "--source", clip, "--model", detector, "--frames", "24", *FAST,
                "--grid", "nireq=1,2", "--grid", "preprocess=host,separate", "--grid", "infer_precision=f32",
                "--max-latency-ms", "10000", "--report", "tune.json", "--csv", "tune.csv", timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "tune.json").read_text())
    rows = doc["results"]
    assert len(rows) == 5 and rows[doc["reference"]]["reference"] is True
    seen = {(x["config"]["nireq"], x["config"]["preprocess"]) for x in rows if not x["reference"]}
    assert seen == {("1", "host"), ("2", "host"), ("1", "separate"), ("2", "separate")}
    for x in rows:
        assert x["status"] == "ok", x["error"]
        assert x["fps"] > 0 and x["model_only_fps"] > 0 and x["e2e"]["p99"] >= x["e2e"]["p50"] > 0
        assert x["peak_rss_bytes"] > 0 and x["compile_seconds"] > 0 and x["bottleneck"]
    # The Pareto set is exactly the non-dominated results.
    assert doc["pareto"] == pareto([(x["fps"], x["e2e"]["p99"], x["accuracy"]["agreement"]) for x in rows])
    # A budget is given: latency is measured on a second run of each configuration, paced like a camera.
    assert doc["latency"] == "paced"
    for x in rows:
        assert x["paced"]["e2e"]["p99"] >= x["paced"]["e2e"]["p50"] > 0 and x["paced"]["e2e"] == {
            k: x["e2e"][k] for k in ("p50", "p99")}
    # The budget is generous, so the recommendation meets it and is the fastest that does not change results
    # (nor drop frames at the source's pace).
    best = rows[doc["recommended"]]
    assert best["e2e"]["p99"] <= 10.0 and not best["accuracy"]["changes_results"]
    eligible = [x["fps"] for x in rows if not x["accuracy"]["changes_results"] and x["paced"]["keeps_pace"]]
    assert best["fps"] == max(eligible)
    assert doc["recommended_command"].startswith("vidprof run ") and "--realtime" in doc["recommended_command"]
    # nireq cannot change results: host + f32 configurations agree exactly with the host + f32 reference.
    for x in rows:
        acc = x["accuracy"]
        assert acc["frames"] == 24
        if x["config"].get("preprocess") == "host":
            assert acc["agreement"] == 1.0 and acc["max_abs_diff"] < 1e-3
        else:  # OpenVINO's resize differs from OpenCV's: the difference is measured, not assumed away
            assert acc["max_abs_diff"] > 0
    with open(tmp_path / "tune.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 5 and {"fps", "e2e_p99_seconds", "agreement", "pareto", "recommended"} <= set(table[0])
    assert "recommended:" in r.stdout and "Pareto front" in r.stdout


def test_a_failing_configuration_does_not_stop_the_sweep(run_cli, detector: str, tmp_path: Path) -> None:
    """Mixed image sizes: host preprocessing copes, a graph built for the first size does not."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, (w, h) in enumerate([(160, 120)] * 3 + [(80, 60)] + [(160, 120)] * 2):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((h, w, 3), 30 * i, np.uint8))
    r = run_cli("tune", "--source", str(folder), "--model", detector, "--frames", "6", *FAST,
                "--grid", "preprocess=separate,host", "--report", "tune.json", timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "tune.json").read_text())
    by = {x["config"].get("preprocess"): x for x in doc["results"] if not x["reference"]}
    assert by["separate"]["status"] == "failed" and "failed" in by["separate"]["error"]
    assert by["host"]["status"] == "ok"
    assert doc["results"][doc["recommended"]]["status"] == "ok"
    assert "failed" in r.stdout


def test_bad_grids_fail_before_anything_runs(run_cli, clip: str, detector: str) -> None:
    for args, fragment in ((["--grid", "colour=red"], "unknown key"),
                           (["--grid", "device=NOSUCHDEVICE"], "not available here"),
                           (["--grid", "nireq="], "no values"),
                           (["--grid", "hint=fastest"], "--hint 'fastest'"),
                           ([], "at least one --grid")):
        r = run_cli("tune", "--source", clip, "--model", detector, "--frames", "4", *args, timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and "tuning" not in r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("vidprof: error:")]
        assert len(errors) == 1 and fragment in errors[0], (args, r.stderr)


def test_no_realtime_measures_latency_as_fast_as_the_source_decodes(run_cli, clip: str, detector: str,
                                                                     tmp_path: Path) -> None:
    r = run_cli("tune", "--source", clip, "--model", detector, "--frames", "8", *FAST, "--grid", "nireq=1,2",
                "--max-latency-ms", "10000", "--no-realtime", "--report", "tune.json", timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "tune.json").read_text())
    assert doc["latency"] == "unpaced" and all(x["paced"] is None for x in doc["results"])
    assert "each runs twice" not in r.stderr and "includes the backlog" in " ".join(r.stdout.split())
    r = run_cli("tune", "--source", clip, "--model", detector, "--grid", "nireq=1,2", "--no-realtime",
                "--realtime-fps", "10", timeout=120)
    assert r.returncode == 2 and "--no-realtime with --realtime-fps" in r.stderr


def test_the_recommendation_says_why_faster_configurations_were_passed_over() -> None:
    def row(fps: float, p99: float, changes: bool = False, drop: float | None = None) -> dict:
        paced = None if drop is None else {"keeps_pace": drop <= 0.01, "dropped_ratio": drop}
        return {"status": "ok", "fps": fps, "e2e": {"p50": p99 / 2, "p99": p99}, "paced": paced,
                "accuracy": {"changes_results": changes, "agreement": 0.95 if changes else 1.0}}

    rows = [row(100, 0.04, drop=0.0), row(300, 0.03, changes=True, drop=0.0), row(200, 0.08, drop=0.0),
            row(250, 0.02, drop=0.2)]
    best, why = recommend(rows, 0.05)
    assert best == 0
    assert "#1 changes results (agreement 0.950)" in why
    assert "#3 drops 20% of frames at the source's pace" in why
    assert "#2 p99 80.0 ms is over the 50 ms budget" in why
    assert why.index("#1") < why.index("#3") < why.index("#2")  # fastest first
