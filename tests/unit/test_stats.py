import pytest

from vidprof.profiling.stats import Stats


def test_percentiles_of_known_values() -> None:
    s = Stats.of([float(i) for i in range(1, 101)])  # 1..100
    assert s.count == 100
    assert s.mean == pytest.approx(50.5)
    assert s.p50 == pytest.approx(50.5)
    assert s.p95 == pytest.approx(95.05)
    assert s.p99 == pytest.approx(99.01)
    assert s.max == 100.0


def test_single_value_and_empty() -> None:
    assert Stats.of([0.25]).to_dict() == {"count": 1, "mean": 0.25, "p50": 0.25, "p95": 0.25, "p99": 0.25, "max": 0.25}
    assert Stats.of([]).count == 0
