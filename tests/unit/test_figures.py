"""Bounded per-frame figures: exact while few, a quantile sketch with a stated error beyond, mergeable."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from vidprof.profiling import figures
from vidprof.profiling.figures import EXACT_LIMIT, RELATIVE_ACCURACY, Figure


def test_exact_while_few_values() -> None:
    f = Figure()
    values = [0.001 * (i % 97 + 1) for i in range(1000)]
    for v in values:
        f.add(v)
    s = f.stats()
    a = np.asarray(values)
    assert f.exact and s.count == 1000 and s.max == a.max()
    assert s.p50 == np.percentile(a, 50) and s.p95 == np.percentile(a, 95) and s.p99 == np.percentile(a, 99)
    assert s.mean == pytest.approx(a.mean(), rel=1e-12)
    assert np.array_equal(np.asarray(f), a)


def test_beyond_the_exact_limit_quantiles_keep_the_stated_error() -> None:
    rng = np.random.default_rng(1)
    a = rng.lognormal(mean=-4.5, sigma=0.8, size=EXACT_LIMIT * 5)  # latencies around 10 ms, a long tail
    f = Figure()
    f.extend(a.tolist())
    assert not f.exact
    for q in (0.5, 0.95, 0.99):
        true = np.quantile(a, q, method="inverted_cdf")
        assert abs(f.quantile(q) - true) <= RELATIVE_ACCURACY * true * 1.0001, q
    s = f.stats()
    assert s.count == len(a) and s.max == a.max() and s.mean == pytest.approx(a.mean(), rel=1e-9)
    with pytest.raises(ValueError, match="only the sketch"):
        f.values()


def test_memory_does_not_grow_with_the_number_of_values() -> None:
    rng = np.random.default_rng(2)
    f = Figure()
    f.extend(rng.uniform(0.001, 0.05, EXACT_LIMIT * 2).tolist())
    f.window()
    before = _size(f)
    f.extend(rng.uniform(0.001, 0.05, EXACT_LIMIT * 20).tolist())
    f.window()
    assert _size(f) <= before * 1.05 + 4096


def _size(f: Figure) -> int:
    stores = [f._sketch._store, f._sketch._negative_store]
    keys = f._keys.nbytes if f._keys is not None else 0
    return keys + sum(sys.getsizeof(getattr(s, "bins", [])) for s in stores) + sum(
        sys.getsizeof(getattr(f, slot)) for slot in ("_pending", "_window", "_recent"))


def test_merge_of_streams_equals_one_figure_of_all_values() -> None:
    rng = np.random.default_rng(3)
    parts = [rng.uniform(0.002, 0.02, n) for n in (300, 500, 200)]
    merged = Figure()
    for p in parts:
        g = Figure()
        g.extend(p.tolist())
        merged.merge(g)
    allv = np.concatenate(parts)
    assert merged.exact and merged.stats().p99 == np.percentile(allv, 99) and merged.count == 1000
    big = [Figure() for _ in range(2)]
    for g, p in zip(big, (rng.uniform(0.002, 0.02, EXACT_LIMIT), rng.uniform(0.01, 0.1, EXACT_LIMIT)), strict=True):
        g.extend(p.tolist())
    total = Figure()
    for g in big:
        total.merge(g)
    assert not total.exact and total.count == 2 * EXACT_LIMIT


def test_window_gives_the_values_since_the_last_read() -> None:
    f = Figure()
    for v in (1.0, 2.0, 3.0):
        f.add(v)
    assert f.window().tolist() == [1.0, 2.0, 3.0]
    f.add(4.0)
    assert f.window().tolist() == [4.0] and f.window().tolist() == []
    assert f.recent(2) == [3.0, 4.0]


def test_zero_and_negative_values_are_kept() -> None:
    f = Figure()
    f.extend([0.0, -1e-9, 1e-9] * (EXACT_LIMIT // 2))
    assert f.min == -1e-9 and f.max == 1e-9 and f.count == 3 * (EXACT_LIMIT // 2)
    assert abs(f.quantile(0.5)) <= 1e-9


def test_the_sketch_matches_one_made_value_by_value() -> None:
    from ddsketch import DDSketch

    rng = np.random.default_rng(5)
    v = np.concatenate([rng.lognormal(-5, 2, 3000), [0.0, -1e-9, 2e7]])
    f = Figure()
    f.extend(v.tolist())
    ref = DDSketch(RELATIVE_ACCURACY)
    for x in v:
        ref.add(float(x))
    for q in (0.01, 0.5, 0.9, 0.99, 1.0):
        assert f.sketch().get_quantile_value(q) == pytest.approx(ref.get_quantile_value(q), rel=1e-12)
    assert f.sketch().count == ref.count


def test_bulk_keys_match_the_library() -> None:
    """The numpy key formula is checked against ddsketch itself; were it to differ, values go one by one."""
    assert figures._BULK
    rng = np.random.default_rng(4)
    v = rng.lognormal(-5, 2, 1000)
    assert list(figures._keys(figures._MAPPING, v)) == [figures._MAPPING.key(float(x)) for x in v]


def test_timeline_rows_are_bounded() -> None:
    """A day-long run keeps a bounded timeline: rows are thinned and come less often, counters still add up."""
    from vidprof.profiling import timeline
    from vidprof.profiling.recorder import Recorder

    rec = Recorder(None)
    tl = timeline.Timeline([rec])
    t = 0.0
    for _ in range(timeline.MAX_ROWS * 3):
        t += tl.interval
        assert tl.due(t)
        tl.sample(t, 0, 1, {}, {}, lambda: 0)
    assert len(tl.rows) <= timeline.MAX_ROWS and tl.interval >= 2.0
    assert [r["t"] for r in tl.rows] == sorted(r["t"] for r in tl.rows)
