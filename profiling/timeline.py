"""A once-a-second record of the run, so a saved report can be drawn as time series (FPS, latency
percentiles, queue depths...) the way Grafana draws the live metrics."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
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

    def __init__(self, recorders: Sequence[Recorder]) -> None:
        self._rs = list(recorders)
        self.rows: list[dict[str, Any]] = []
        self._last_t = 0.0
        self._last_completed = 0
        self._last_len: dict[str, int] = {}

    def _window(self, key: str, get: Callable[[Recorder], Any]) -> list[float]:
        """The values each stream added since the last row, all streams together."""
        out: list[float] = []
        for i, r in enumerate(self._rs):
            arr = get(r)
            k = f"{i}:{key}"
            start = self._last_len.get(k, 0)
            self._last_len[k] = len(arr)
            out.extend(arr[start:])
        return out

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
            "e2e": _pcts(self._window("e2e", lambda r: r.samples.e2e), (50, 95, 99)),
            "stages": {st: _pcts(self._window("s:" + st, lambda r, st=st: r.samples.stages[st]), (50, 95))
                       for st in STAGES},
            "waits": {w: _pcts(self._window("w:" + w, lambda r, w=w: r.samples.waits[w]), (50, 95)) for w in WAITS},
            "h2d_bytes": sum(r.h2d_bytes for r in rs),
            "d2h_bytes": sum(r.d2h_bytes for r in rs),
            "h2d_seconds": float(sum(self._window("h2d", lambda r: r.samples.h2d_seconds))),
            "d2h_seconds": float(sum(self._window("d2h", lambda r: r.samples.d2h_seconds))),
            "infer_requests_busy": infer_busy,
            "nireq": nireq,
            "queue_depth": dict(queue_depth),
            "busy": dict(busy),
            "rss_bytes": rss(),
            "cpu_seconds": cpu_seconds(),
        }
        self.rows.append(row)
        self._last_t, self._last_completed = t, done
