"""Percentiles and per-figure statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Stats:
    """count, mean, p50, p95, p99, max of one figure, in seconds.

    One set of percentiles everywhere (terminal, report, HTML/PNG, Grafana): p50, p95, p99."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if len(values) == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        a = np.asarray(values, dtype=np.float64)
        p50, p95, p99 = np.percentile(a, [50, 95, 99])  # linear interpolation between ranks
        return cls(len(a), float(a.mean()), float(p50), float(p95), float(p99), float(a.max()))

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)
