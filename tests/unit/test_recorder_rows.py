"""The recorder keeps a row of marks per frame and turns rows into figures in bulk: every figure must hold
exactly what the per-frame accounting of ``Marks`` gives, frame by frame, whichever marks are missing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from vidprof.profiling.marks import STAGES, WAITS, Marks
from vidprof.profiling.recorder import ROWS_PER_FLUSH, Recorder, Transfer


def _frame(rng: random.Random, t: int, i: int) -> tuple[Marks, Transfer]:
    """A frame whose marks are each left out now and then (a stage that did not run, a frame never queued for a
    request), with durations that differ frame to frame; clock values start at 0 (a fake clock's first reading)."""
    m = Marks(frame=i)
    for stage in STAGES:
        if stage == "inference" and rng.random() < 0.8:  # queued for a request, whether or not preprocess ended
            m.infer_wait_start = t
            t += rng.randrange(0, 1_000_000)
        if rng.random() < 0.15:
            continue
        m.start[stage] = t
        t += rng.randrange(1, 5_000_000)
        if rng.random() < 0.05:
            continue  # started, never ended
        m.end[stage] = t
        t += rng.randrange(0, 2_000_000)
    return m, Transfer(h2d_bytes=rng.randrange(1, 10**6), h2d_ns=rng.randrange(0, 10**5),
                       d2h_bytes=rng.randrange(1, 10**5), d2h_ns=rng.randrange(0, 10**5))


def _expected(frames: list[tuple[Marks, Transfer]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {f"stage:{s}": [] for s in STAGES} | {f"wait:{w}": [] for w in WAITS}
    out |= {"e2e": [], "unaccounted": [], "h2d": [], "d2h": []}
    for m, tr in frames:
        total = 0.0
        for s in STAGES:
            sec = m.stage_seconds(s)
            if sec is not None:
                out[f"stage:{s}"].append(sec)
                total += sec
        for w, sec in m.waits_seconds().items():
            out[f"wait:{w}"].append(sec)
            total += sec
        e2e = m.e2e_seconds()
        if e2e is not None:
            out["e2e"].append(e2e)
            out["unaccounted"].append(e2e - total)
        out["h2d"].append(tr.h2d_ns / 1e9)
        out["d2h"].append(tr.d2h_ns / 1e9)
    return out


@pytest.mark.parametrize("n", [1, ROWS_PER_FLUSH - 1, ROWS_PER_FLUSH, 3 * ROWS_PER_FLUSH + 17])
def test_bulk_figures_equal_the_per_frame_accounting(n: int) -> None:
    rng = random.Random(n)
    frames, t = [], 0
    for i in range(n):
        frames.append(_frame(rng, t, i))
        t += 3_000_000
    rec = Recorder(None)
    for m, tr in frames:
        rec.frame_done(m, tr, False)
    want = _expected(frames)
    s = rec.samples
    got = {**{f"stage:{k}": f for k, f in s.stages.items()}, **{f"wait:{k}": f for k, f in s.waits.items()},
           "e2e": s.e2e, "unaccounted": s.unaccounted, "h2d": s.h2d_seconds, "d2h": s.d2h_seconds}
    for key, fig in got.items():
        assert len(fig) == len(want[key]), key
        np.testing.assert_allclose(fig.values(), want[key], rtol=0, atol=1e-12, err_msg=key)
    for stage in STAGES:
        assert rec.busy_seconds[stage] == pytest.approx(sum(want[f"stage:{stage}"]), abs=1e-9)
    assert rec.completed == n
    assert rec.h2d_bytes == sum(tr.h2d_bytes for _, tr in frames)


def test_a_read_between_flushes_sees_every_frame_and_the_slowest_is_the_exemplar() -> None:
    rec = Recorder(None)
    slow = None
    for i in range(10):  # far fewer than a flush's worth: only a read brings them in
        m = Marks(frame=i)
        m.start["decode"], m.end["decode"] = 1000 * i, 1000 * i + (50_000 if i == 6 else 100)
        m.start["postprocess"], m.end["postprocess"] = 1000 * i + 60_000, 1000 * i + 60_100
        rec.frame_done(m, Transfer(), False)
        slow = m if i == 6 else slow
    assert len(rec.samples.stages["decode"]) == 10
    assert len(rec.samples.e2e) == 10
    top = rec.samples.stages["decode"].take_top()
    assert top is not None and top[1] is slow and top[0] == pytest.approx(50e-6)
    # A snapshot (a scrape) flushes too: counts there match.
    m = Marks(frame=10)
    m.start["decode"], m.end["decode"] = 20_000_000, 20_000_100
    rec.frame_done(m, Transfer(), False)
    buckets, _ = rec.snapshot().histograms[("stage", "decode")]
    assert int(buckets.sum()) == 11
