"""A once-a-second record of the run, so a saved report can be drawn as time series (FPS, latency
percentiles, queue depths...) the way Grafana draws the live metrics."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from vidprof.profiling.figures import Figure
from vidprof.profiling.marks import STAGES, WAITS
from vidprof.profiling.recorder import Recorder


def _pcts(values: Any, qs: tuple[int, ...]) -> dict[str, float] | None:
    if len(values) == 0:
        return None
    out = np.percentile(np.asarray(values, dtype=np.float64), qs)
    return {f"p{q}": float(v) for q, v in zip(qs, out, strict=True)}


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


MAX_ROWS = 1800  # a row a second for half an hour; a longer run thins its older rows (see ``_thin``)


class Timeline:
    """Rows of windowed figures; each row covers the frames completed since the previous row.

    Bounded: when ``MAX_ROWS`` are kept, every other row is dropped and rows come half as often, so a run
    of a day keeps ~1800 rows at ~1 minute apart, not 86 400 (the rows' counters are cumulative, so a
    thinned timeline still adds up)."""

    def __init__(self, recorders: Sequence[Recorder], interval: float = 1.0) -> None:
        self._rs = list(recorders)
        self.rows: list[dict[str, Any]] = []
        self.interval = interval  # seconds between rows; doubles each time the rows are thinned
        self._last_t = 0.0
        self._last_completed = 0

    def due(self, t: float) -> bool:
        return t - self._last_t >= self.interval

    def _thin(self) -> None:
        if len(self.rows) >= MAX_ROWS:
            self.rows = self.rows[1::2]
            self.interval *= 2

    def _window(self, get: Callable[[Recorder], Figure]) -> np.ndarray:
        """The values each stream added since the last row, all streams together."""
        parts = []
        for r in self._rs:
            with r.lock:  # the postprocess thread may be adding to the same figure
                parts.append(get(r).window())
        return np.concatenate(parts) if parts else np.zeros(0)

    def sample(self, t: float, infer_busy: int, nireq: int, queue_depth: Mapping[str, int],
               busy: Mapping[str, float], rss: Callable[[], int]) -> None:
        rs = self._rs
        window = t - self._last_t
        done = sum(r.completed for r in rs)
        row: dict[str, Any] = {
            "t": t,
            "completed": done,
            "dropped": sum(r.dropped for r in rs),
            "failed": sum(r.failed for r in rs),
            "fps": (done - self._last_completed) / window if window > 0 else 0.0,
            "e2e": _pcts(self._window(lambda r: r.samples.e2e), (50, 95, 99)),
            "stages": {st: _pcts(self._window(lambda r, st=st: r.samples.stages[st]), (50, 95, 99))
                       for st in STAGES},
            "waits": {w: _pcts(self._window(lambda r, w=w: r.samples.waits[w]), (50, 95, 99)) for w in WAITS},
            "h2d_bytes": sum(r.h2d_bytes for r in rs),
            "d2h_bytes": sum(r.d2h_bytes for r in rs),
            "h2d_seconds": float(self._window(lambda r: r.samples.h2d_seconds).sum()),
            "d2h_seconds": float(self._window(lambda r: r.samples.d2h_seconds).sum()),
            "infer_requests_busy": infer_busy,
            "nireq": nireq,
            "queue_depth": dict(queue_depth),
            "busy": dict(busy),
            "rss_bytes": rss(),
            "cpu_seconds": cpu_seconds(),
        }
        self._thin()
        self.rows.append(row)
        self._last_t, self._last_completed = t, done
