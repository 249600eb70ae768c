"""One per-frame figure of one stream (a stage's seconds, the end-to-end latency, ...), in bounded memory.

A run may last for days: keeping every value (8 bytes x 14 figures a frame) would grow without end. A
figure keeps its values exactly while there are at most ``EXACT_LIMIT`` of them (short runs and tests get
exact percentiles), and always feeds a DDSketch (the ``ddsketch`` package): a quantile sketch whose
quantiles are within ``RELATIVE_ACCURACY`` of the true value, whose size depends on the range of values,
not their number, and which merges across streams and processes. Count, sum, min and max are always exact.

Values arrive one at a time on a stream's postprocess thread and are only appended to a short buffer;
they reach the exact store, the sketch and the window (the values since the timeline's last row) in
bulk, a few dozen at a time, with numpy.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

from vidprof.profiling.stats import Stats

EXACT_LIMIT = 10_000  # values kept exactly, per figure and stream
RELATIVE_ACCURACY = 0.005  # beyond that, a quantile is within 0.5 % of the true value
FLUSH_EVERY = 128  # values buffered before they are added in bulk (a scrape or a read flushes at once)
# The sketch's keys are counted in a dense numpy array over this range of values (seconds); values outside
# it, zeros and negatives go to the sketch one by one (rare: a 1 ns wait, rounding in "unaccounted").
KEY_RANGE = (1e-9, 1e6)
WINDOW_LIMIT = 65_536  # the values since the last window read, at most (a timeline reads every second)
RECENT = 256  # the latest values, for a live view


def _bulk_keys(mapping: LogarithmicMapping) -> bool:
    """Whether ``mapping.key`` is the formula below, so keys can be computed for a whole batch with numpy;
    checked against the library on import, so a changed ddsketch falls back to one call per value."""
    try:
        probe = np.array([1e-6, 3.3e-5, 0.0123, 0.5, 1.0, 7.77, 1234.5])
        return [mapping.key(float(v)) for v in probe] == list(_keys(mapping, probe))
    except (AttributeError, TypeError, ValueError):
        return False


def _keys(mapping: LogarithmicMapping, values: np.ndarray) -> np.ndarray:
    return (np.ceil(np.log2(values) * mapping._multiplier) + mapping._offset).astype(np.int64)


_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_BULK = _bulk_keys(_MAPPING)
_KEY_LO, _KEY_HI = _MAPPING.key(KEY_RANGE[0]), _MAPPING.key(KEY_RANGE[1])


class Figure:
    """Add values with ``add``; read ``stats()``, ``window()``, ``recent()``; ``merge`` several."""

    __slots__ = ("_bounds", "_exact", "_keys", "_pending", "_recent", "_sketch", "_top", "_top_tag", "_window",
                 "buckets", "count", "max", "min", "sum")

    def __init__(self, bounds: tuple[float, ...] | None = None) -> None:
        """``bounds``: upper bounds of histogram buckets (Prometheus' ``le``) to count values into, in bulk,
        so a histogram is exported without a per-frame ``observe``; ``buckets[-1]`` counts the rest."""
        self._bounds = np.asarray(bounds, dtype=np.float64) if bounds else None
        self.buckets = np.zeros(len(bounds) + 1 if bounds else 0, dtype=np.int64)
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self._pending = array("d")
        self._exact: array | None = array("d")  # None once there were more than EXACT_LIMIT values
        self._sketch = DDSketch(RELATIVE_ACCURACY)  # values outside KEY_RANGE, added one by one
        self._keys: np.ndarray | None = None  # counts per sketch key in KEY_RANGE, made on first use
        self._window = array("d")
        self._recent = array("d")
        self._top = -math.inf  # the largest value given to add_tagged since take_top(), and its tag
        self._top_tag: object = None

    def add(self, value: float) -> None:
        self._pending.append(value)
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def add_tagged(self, value: float, tag: object) -> None:
        """``add``, and remember ``tag`` (a frame's marks) while ``value`` is the largest since ``take_top()``:
        the slowest frame between two scrapes, for an exemplar. One comparison more than ``add``."""
        self._pending.append(value)
        if value > self._top:
            self._top = value
            self._top_tag = tag
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def extend_tagged(self, values: np.ndarray, tags: Sequence[object] | None = None) -> None:
        """``add_tagged`` for a batch at once (``tags[i]`` goes with ``values[i]``; None: ``add``), in order. Folded
        in, like ``add``, once ``FLUSH_EVERY`` values wait or on a read: a flush costs the same for 10 values as
        for 500, and the recorder hands over small batches each time something reads it."""
        if not len(values):
            return
        values = np.ascontiguousarray(values, dtype=np.float64)
        if tags is not None:
            top = int(values.argmax())
            if values[top] > self._top:
                self._top = float(values[top])
                self._top_tag = tags[top]
        self._pending.frombytes(values.tobytes())
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def take_top(self) -> tuple[float, object] | None:
        """The largest value given to ``add_tagged`` since the last call, with its tag (None: none), then
        forgets it."""
        top, tag = self._top, self._top_tag
        self._top, self._top_tag = -math.inf, None
        return None if tag is None else (top, tag)

    def extend(self, values: Iterable[float]) -> None:
        self._pending.extend(values)
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, array("d")
        a = np.frombuffer(batch, dtype=np.float64)
        self.count += len(a)
        self.sum += float(a.sum())
        self.min = min(self.min, float(a.min()))
        self.max = max(self.max, float(a.max()))
        if self._exact is not None:
            if len(self._exact) + len(a) <= EXACT_LIMIT:
                self._exact.extend(batch)
            else:
                self._exact = None  # from here on the sketch answers
        self._add_to_sketch(a)
        if self._bounds is not None:
            # side="left": a value equal to a bound belongs to that bucket (le means <=).
            self.buckets += np.bincount(np.searchsorted(self._bounds, a, side="left"), minlength=len(self.buckets))
        if len(self._window) < WINDOW_LIMIT:
            self._window.extend(batch[:WINDOW_LIMIT - len(self._window)])
        self._recent.extend(batch)
        if len(self._recent) > 2 * RECENT:
            del self._recent[:-RECENT]

    def _add_to_sketch(self, a: np.ndarray) -> None:
        if _BULK:
            inside = (a >= KEY_RANGE[0]) & (a <= KEY_RANGE[1])
            if self._keys is None:
                self._keys = np.zeros(_KEY_HI - _KEY_LO + 1, dtype=np.int64)
            self._keys += np.bincount(_keys(_MAPPING, a[inside]) - _KEY_LO, minlength=len(self._keys))
            a = a[~inside]
        for v in a.tolist():
            self._sketch.add(v)

    def sketch(self) -> DDSketch:
        """A DDSketch of every value (mergeable, serialisable): the bulk-counted keys added to the rest."""
        self.flush()
        out = DDSketch(RELATIVE_ACCURACY)
        out.merge(self._sketch)
        if self._keys is not None:
            # A key's representative value maps back to the same key: the sketch is the one per-value adds make.
            for k in np.flatnonzero(self._keys).tolist():
                out.add(_MAPPING.value(k + _KEY_LO), float(self._keys[k]))
        return out

    @property
    def exact(self) -> bool:
        return self._exact is not None

    def values(self) -> np.ndarray:
        """Every value, in order; only while the figure is exact (tests check per-frame accounting with it)."""
        self.flush()
        if self._exact is None:
            raise ValueError(f"more than {EXACT_LIMIT} values: only the sketch is kept")
        return np.frombuffer(self._exact, dtype=np.float64) if len(self._exact) else np.zeros(0)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        v = self.values()
        return v.astype(dtype) if dtype is not None else v

    def __len__(self) -> int:
        return self.count + len(self._pending)

    def __iter__(self) -> Iterator[float]:
        return iter(self.values().tolist())

    def flushed_sum(self) -> float:
        """The exact sum of every value."""
        self.flush()
        return self.sum

    def window(self) -> np.ndarray:
        """The values added since the last call (a timeline row's worth), then forgets them."""
        self.flush()
        out, self._window = np.frombuffer(self._window, dtype=np.float64).copy(), array("d")
        return out

    def recent(self, n: int = RECENT) -> list[float]:
        """The latest ``n`` values (at most ``RECENT``), for a live view."""
        self.flush()
        return self._recent[-n:].tolist()

    def quantile(self, q: float) -> float:
        self.flush()
        if self.count == 0:
            return 0.0
        if self._exact is not None:
            return float(np.percentile(np.frombuffer(self._exact, dtype=np.float64), q * 100))
        v = self.sketch().get_quantile_value(q)
        return float(min(max(v, self.min), self.max)) if v is not None else 0.0

    def stats(self) -> Stats:
        self.flush()
        if self.count == 0:
            return Stats.of(())
        if self._exact is not None:
            return Stats.of(np.frombuffer(self._exact, dtype=np.float64))
        sketch = self.sketch()
        p50, p95, p99 = (min(max(sketch.get_quantile_value(q) or 0.0, self.min), self.max) for q in (0.5, 0.95, 0.99))
        return Stats(self.count, self.sum / self.count, p50, p95, p99, self.max)

    def merge(self, other: Figure) -> None:
        """Add ``other``'s values to this figure (the streams of a run, into the aggregate)."""
        self.flush()
        other.flush()
        if other.count == 0:
            return
        if self._exact is not None and other._exact is not None and self.count + other.count <= EXACT_LIMIT:
            self._exact.extend(other._exact)
        else:
            self._exact = None
        self._sketch.merge(other._sketch)
        if other._keys is not None:
            self._keys = other._keys.copy() if self._keys is None else self._keys + other._keys
        if len(self.buckets) == len(other.buckets):
            self.buckets += other.buckets
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self._recent.extend(other._recent[-RECENT:])
