"""vidprof density: the criteria and the search on hand-made figures, then real searches and runs."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vidprof.pipeline.density import (
    DensityOptions,
    Search,
    build_doc,
    capture_seconds,
    judge,
    next_n,
    result,
    summary_line,
)

TARGET = 30.0
BUDGET = 0.2  # seconds


def make_report(completed: tuple[int, ...] = (240, 240), dropped: int = 0, p99: float = 0.05,
                duration: float = 8.0, fault: str | None = None, failed: int = 0) -> dict[str, Any]:
    """A `vidprof run --copies N --duration 8` report with only the figures judge() reads."""
    per = [{"frames": {"completed": c, "dropped": 0, "failed": 0, "read": c}} for c in completed]
    per[0]["frames"]["dropped"] = dropped
    per[0]["frames"]["read"] += dropped
    return {
        "frames": {"completed": sum(completed), "dropped": dropped, "failed": failed,
                   "read": sum(completed) + dropped + failed},
        # The wall time counts start-up and drain: a rate over it would come out low.
        "wall_seconds": duration + 1.5,
        "config": {"duration": duration},
        "e2e": {"count": sum(completed), "p99": p99},
        "bottleneck": {"stage": "inference"},
        "fault": fault,
        "streams": {str(i): s for i, s in enumerate(per)},
    }


# ----------------------------------------------------------------- judge(): each criterion failing alone
def test_a_trial_within_every_criterion_passes() -> None:
    assert judge(make_report(), TARGET, BUDGET, 0.01) == (True, None)
    # Rates are over capture time (--duration), not wall time: 240 frames / 8 s is 30 FPS exactly.
    assert capture_seconds(make_report()) == 8.0


@pytest.mark.parametrize(("report", "fragment"), [
    (make_report(completed=(240, 220)), "stream 1 27.5 FPS < 28.5"),  # slowest stream below 95 % of target
    (make_report(dropped=5), "dropped 1.0% > 1%"),  # 5 / 485 read: just over 1 %
    (make_report(p99=0.25), "p99 250 ms > 200 ms"),
    (make_report(fault="inference: RuntimeError: boom"), "fault: inference"),
    (make_report(failed=3), "3 frames failed"),
])
def test_each_criterion_fails_a_trial_alone(report: dict[str, Any], fragment: str) -> None:
    passed, why = judge(report, TARGET, BUDGET, 0.01)
    assert not passed and why is not None and fragment in why
    assert ";" not in why  # only that criterion


def test_criteria_edges() -> None:
    assert judge(make_report(completed=(240, 229)), TARGET, BUDGET, 0.01)[0]  # 28.6 FPS >= 28.5
    assert judge(make_report(dropped=4), TARGET, BUDGET, 0.01)[0]  # 4 / 484 < 1 %
    assert judge(make_report(p99=0.2), TARGET, BUDGET, 0.01)[0]  # the budget itself is within it
    passed, why = judge(make_report(completed=(0,)), TARGET, BUDGET, 0.01)
    assert not passed and "no frame completed" in why and "0.0 FPS" in why
    # Several failures are all named.
    passed, why = judge(make_report(completed=(200, 240), p99=0.5), TARGET, BUDGET, 0.01)
    assert not passed and "FPS <" in why and "p99" in why


# ----------------------------------------------------------------- next_n(): grow, bisect, cap
def trials(*outcomes: tuple[int, bool]) -> list[dict[str, Any]]:
    return [{"streams": n, "passed": p} for n, p in outcomes]


def walk(limit: int, cap: int = 32) -> list[int]:
    """The N tried when every N <= limit passes and every N > limit fails."""
    done: list[dict[str, Any]] = []
    while (n := next_n(done, cap)) is not None:
        done.append({"streams": n, "passed": n <= limit})
    return [t["streams"] for t in done]


def test_next_n_grows_then_bisects() -> None:
    assert next_n([]) == 1
    assert next_n(trials((1, True))) == 2
    assert next_n(trials((1, True), (2, True), (4, True))) == 8
    assert next_n(trials((1, True), (2, True), (4, True), (8, False))) == 6
    assert next_n(trials((1, True), (2, True), (4, True), (8, False), (6, False))) == 5
    assert next_n(trials((1, True), (2, True), (4, False), (3, True))) is None
    assert next_n(trials((1, False))) is None  # not even one stream
    assert walk(3) == [1, 2, 4, 3]
    assert walk(5) == [1, 2, 4, 8, 6, 5]
    assert walk(0) == [1]
    assert walk(1) == [1, 2]
    assert walk(16) == [1, 2, 4, 8, 16, 32, 24, 20, 18, 17]


def test_next_n_stops_at_the_cap() -> None:
    assert walk(100) == [1, 2, 4, 8, 16, 32]
    assert walk(100, cap=20) == [1, 2, 4, 8, 16, 20]
    assert walk(17, cap=20) == [1, 2, 4, 8, 16, 20, 18, 17]
    assert walk(5, cap=1) == [1]
    assert result(trials((1, True), (2, True))) == (2, None)  # capped: nothing gave out


def test_result_and_summary_line() -> None:
    rows = [{"streams": n, "passed": n <= 3, "bottleneck": "inference", "why": None if n <= 3 else "p99 312 ms"}
            for n in (1, 2, 4, 3)]
    best, gave = result(rows)
    assert best == 3 and gave is not None and gave["streams"] == 4
    doc = {"max_streams": 3, "target_fps": 30.0, "max_latency_seconds": 0.2, "max_drop": 0.01,
           "gave_out_at": {"streams": 4, "stage": "inference", "why": "p99 312 ms > 200 ms"}}
    assert summary_line(doc) == ("max streams: 3 at 30 FPS each (p99 <= 200 ms, drops <= 1%); "
                                 "at 4 streams inference gave out (p99 312 ms > 200 ms)")


def test_document_from_trials() -> None:
    opts = DensityOptions(source="clip.mp4", source_given=True, model=None, target_fps=30.0, pace_given=False,
                          max_latency=0.2, max_drop=0.01, trial_seconds=8.0, warmup=2, max_streams=32, loop=True)
    rows = [{"streams": n, "passed": n <= 2, "min_stream_fps": 30.0, "e2e_p99": 0.05, "dropped_ratio": 0.0,
             "bottleneck": "decode" if n > 2 else "preprocess", "why": None if n <= 2 else "dropped 5.0% > 1%"}
            for n in (1, 2, 4, 3)]
    doc = build_doc(opts, Search(rows, model_only_fps=250.0, model_path="/cache/sample.xml"))
    assert doc["max_streams"] == 2 and doc["model"] == "/cache/sample.xml"
    assert doc["gave_out_at"] == {"streams": 3, "stage": "decode", "why": "dropped 5.0% > 1%"}
    assert doc["naive_estimate"] == {"model_only_fps": 250.0, "streams": 8}  # floor(250 / 30)
    assert "sustains 2" in doc["naive_vs_measured"] and "decode, not the model" in doc["naive_vs_measured"]
    # The command a user reruns: their source, the result's N, paced at the source's own FPS, looped.
    assert doc["command"] == "vidprof run --source clip.mp4 --copies 2 --realtime --duration 8 --warmup 2 --loop"
    capped = build_doc(opts, Search([{**rows[0], "streams": 32}], 250.0))
    assert capped["max_streams"] == 32 and capped["gave_out_at"] is None
    assert "lower bound" in capped["naive_vs_measured"]
    none = build_doc(opts, Search([{**rows[2], "streams": 1}], None))
    assert none["max_streams"] == 0 and none["command"] is None and none["gave_out_at"]["streams"] == 1


# ----------------------------------------------------------------- end to end: real searches and runs
# The embedded sample clip (720p) through the sample model: one stream of it at full speed already keeps both
# cores of a small machine busy (decode, preprocessing and inference together), and two streams get through
# only 1.0-1.4x as many frames in total as one. So at 65 % of one stream's full speed, one stream leaves a third
# of the machine idle while two ask for 1.3x what one gets through: N is 1 (2 when two streams happen to share
# the cores well) and the trial at N+1 asks for more than the machine has. A shared machine still lands on
# either side near the limit now and then: hence the slack and the one retry below.
FACTOR = 0.65
TRIAL = ["--warmup", "2", "--quiet", "--no-metrics"]
# Latency is not the discriminator here (an overloaded run queues only a few frames): a loose budget, and room
# for a stray drop on a shared machine, keep the passing side from failing for reasons that are not density.
MAX_LATENCY_MS, MAX_DROP = 1000.0, 0.02
# The confirming run at N is judged with this much slack (FPS floor 0.85 x 95 %, drops, latency), the run at
# N+1 strictly: both then hold unless the machine itself changed by more than the slack between the runs.
SLACK_FPS, SLACK_DROP, SLACK_LATENCY = 0.85, 0.05, 2.0


def calibrate(run_cli, folder: Path) -> float:
    """One unpaced stream of the sample clip: how many frames a second this machine gets through right now."""
    r = run_cli("run", "--loop", "--duration", "2", *TRIAL, "--report", "calibrate.json")
    assert r.returncode == 0, r.stderr
    return json.loads((folder / "calibrate.json").read_text())["fps"]


def judged_run(run_cli, folder: Path, args: list[str], streams: int, target: float, slack: bool) -> tuple[bool, str]:
    """`vidprof run` with the reproducing command's arguments at ``streams`` copies, judged like a trial."""
    args = list(args)
    args[args.index("--copies") + 1] = str(streams)
    report = f"direct{streams}.json"
    r = run_cli(*args, "--report", report, "--quiet", "--no-metrics")
    assert r.returncode == 0, r.stderr
    figures = json.loads((folder / report).read_text())
    if slack:
        passed, why = judge(figures, target * SLACK_FPS, MAX_LATENCY_MS / 1e3 * SLACK_LATENCY, MAX_DROP + SLACK_DROP)
    else:
        passed, why = judge(figures, target, MAX_LATENCY_MS / 1e3, MAX_DROP)
    return passed, why or "passed"


@dataclass
class Attempt:
    target: int
    proc: subprocess.CompletedProcess[str]
    doc: dict[str, Any]
    disagreement: str | None  # None: the search found N >= 1 and direct runs confirm N and N+1


def search_and_confirm(run_cli, folder: Path) -> Attempt:
    target = round(FACTOR * calibrate(run_cli, folder))
    r = run_cli("density", "--target-fps", str(target), "--trial-seconds", "3", "--warmup", "2",
                "--max-latency-ms", f"{MAX_LATENCY_MS:g}", "--max-drop", f"{MAX_DROP:g}", "--hint", "throughput",
                "--report", "d.json", timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads((folder / "d.json").read_text())
    n = doc["max_streams"]
    if n == 0:
        return Attempt(target, r, doc, f"even 1 stream at {target} FPS failed: {doc['trials'][0]['why']}")
    # The reproducing command, run directly, meets the criteria at N and not at N+1.
    args = shlex.split(doc["command"])[1:]
    for streams, expected in ((n, True), (n + 1, False)):
        passed, why = judged_run(run_cli, folder, args, streams, target, slack=expected)
        if passed != expected:
            return Attempt(target, r, doc, f"a direct run at {streams} streams: {why}; the search: {doc['trials']}")
    return Attempt(target, r, doc, None)


def test_density_finds_n_and_run_confirms_it(run_cli, tmp_path: Path) -> None:
    attempt = search_and_confirm(run_cli, tmp_path)
    if attempt.disagreement is not None:
        # One retry, recalibrated: other jobs on a shared 2-core machine can take half of it for seconds at a
        # time, so a trial or a direct run can land in such a spell (or just miss one) near the limit; the
        # same disagreement twice in a row, each against a fresh calibration, is a real one.
        attempt = search_and_confirm(run_cli, tmp_path)
    assert attempt.disagreement is None, attempt.disagreement
    target, r, doc = attempt.target, attempt.proc, attempt.doc
    n = doc["max_streams"]
    assert doc["vidprof_density"] == 1 and doc["target_fps"] == target and n >= 1
    assert doc["source"].endswith("sample_720p.mp4") and doc["model"].endswith("sample_detector.xml")
    assert doc["max_latency_seconds"] == MAX_LATENCY_MS / 1e3 and doc["max_drop"] == MAX_DROP
    trials = doc["trials"]
    assert [t["streams"] for t in trials][:2] == [1, 2]  # grown from 1
    assert all(set(t) == {"streams", "passed", "min_stream_fps", "e2e_p99", "dropped_ratio", "bottleneck", "why"}
               for t in trials)
    assert all((t["why"] is None) == t["passed"] for t in trials)
    assert next(t for t in trials if t["streams"] == n)["passed"]
    gave = doc["gave_out_at"]
    assert gave["streams"] == n + 1 and gave["stage"] and gave["why"]
    naive = doc["naive_estimate"]
    assert naive["model_only_fps"] > 0 and naive["streams"] == int(naive["model_only_fps"] // target)
    assert doc["naive_vs_measured"]
    args = shlex.split(doc["command"])
    assert args[:2] == ["vidprof", "run"] and args[args.index("--copies") + 1] == str(n)
    assert "--source" not in args and {"--loop", "--realtime-fps", "--hint"} <= set(args)
    # What was printed: every trial while searching, then the result.
    assert r.stderr.count("vidprof: trying") == len(trials)
    assert f"max streams: {n} at {target} FPS each" in r.stdout and f"at {n + 1} streams" in r.stdout
    assert "naive estimate:" in r.stdout


# ----------------------------------------------------------------- bad input: one line, no traceback
@pytest.mark.parametrize(("argv", "code", "fragment"), [
    (["--target-fps", "0"], 2, "--target-fps 0: expected a rate above 0 frames per second"),
    (["--max-drop", "2"], 2, "--max-drop 2: expected a share from 0 up to (not including) 1"),
    (["--max-latency-ms", "-5"], 2, "--max-latency-ms -5: expected a positive number of milliseconds"),
    (["--max-streams", "0"], 2, "--max-streams 0: expected 1 to"),
    (["--target-fps", "fast"], 2, "invalid float value: 'fast'"),
    (["--hint", "fastest"], 2, "--hint 'fastest': expected one of"),  # run's own check, before any trial
    (["--source", "rtsp://127.0.0.1:9/cam"], 2, "needs a video file, image folder or synthetic"),
    (["--report", "no/such/folder/d.json"], 1, "does not exist; create it or choose another path"),
    (["--source", "missing.mp4"], 1, "missing.mp4: no such file"),
])
def test_bad_input_fails_before_any_trial(run_cli, argv: list[str], code: int, fragment: str) -> None:
    r = run_cli("density", *argv, timeout=60)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and "trying" not in r.stderr and not r.stdout
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("vidprof: error:")]
    assert len(errors) == 1 and fragment in errors[0], r.stderr
