"""A once-a-second record of the run, so a saved report can be drawn as time series (FPS, latency
percentiles, queue depths...) the way Grafana draws the live metrics."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
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


class Timeline:
    """Rows of windowed figures; each row covers the frames completed since the previous row."""

    def __init__(self, recorder: Recorder) -> None:
        self._r = recorder
        self.rows: list[dict[str, Any]] = []
        self._last_t = 0.0
        self._last_completed = 0
        self._last_len: dict[str, int] = {}

    def _window(self, key: str, arr: Any) -> Any:
        start = self._last_len.get(key, 0)
        self._last_len[key] = len(arr)
        return arr[start:]

    def sample(self, t: float, infer_busy: int, nireq: int, queue_depth: Mapping[str, int],
               busy: Mapping[str, float], rss: Callable[[], int]) -> None:
        r, s = self._r, self._r.samples
        window = t - self._last_t
        done = r.completed
        row: dict[str, Any] = {
            "t": t,
            "completed": done,
            "dropped": r.dropped,
            "failed": r.failed,
            "fps": (done - self._last_completed) / window if window > 0 else 0.0,
            "e2e": _pcts(self._window("e2e", s.e2e), (50, 95, 99)),
            "stages": {st: _pcts(self._window("s:" + st, s.stages[st]), (50, 95)) for st in STAGES},
            "waits": {w: _pcts(self._window("w:" + w, s.waits[w]), (50, 95)) for w in WAITS},
            "h2d_bytes": r.h2d_bytes,
            "d2h_bytes": r.d2h_bytes,
            "h2d_seconds": float(sum(self._window("h2d", s.h2d_seconds))),
            "d2h_seconds": float(sum(self._window("d2h", s.d2h_seconds))),
            "infer_requests_busy": infer_busy,
            "nireq": nireq,
            "queue_depth": dict(queue_depth),
            "busy": dict(busy),
            "rss_bytes": rss(),
            "cpu_seconds": cpu_seconds(),
        }
        self.rows.append(row)
        self._last_t, self._last_completed = t, done
