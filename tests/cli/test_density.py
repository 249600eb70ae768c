"""vidprof density: the criteria and the search on hand-made figures, then real searches and runs."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from vidprof.pipeline.density import (
    add_density_arguments,
    capture_seconds,
    judge,
    next_n,
    result,
    run_density,
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
    (make_report(dropped=5), "dropped 1.0% > 1.0%"),  # 5 / 485 read: just over 1 %
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


# ----------------------------------------------------------------- bad input: one line, no traceback
def density_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_density_arguments(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--target-fps", "0"], "--target-fps 0: expected a rate above 0"),
    (["--max-drop", "2"], "--max-drop 2: expected a share"),
    (["--max-latency-ms", "-5"], "--max-latency-ms -5"),
    (["--max-streams", "0"], "--max-streams 0"),
])
def test_impossible_settings_are_usage_errors(argv: list[str], fragment: str) -> None:
    from vidprof.profiling.errors import UsageError

    with pytest.raises(UsageError, match=fragment.replace("-", r"\-")):
        run_density(density_args(*argv))
