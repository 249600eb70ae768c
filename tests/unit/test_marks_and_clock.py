from vidprof.profiling.clock import FakeClock
from vidprof.profiling.marks import Marks


def make_marks() -> Marks:
    """A frame whose every interval is known: decode 2 ms, queue 1, preprocess 3, queue 4,
    infer wait 5, inference 6, queue 7, postprocess 8 (all ms)."""
    c = FakeClock(1_000_000)
    m = Marks()
    # (which mark, then how long until the next one)
    steps = [(("start", "decode"), 0.002), (("end", "decode"), 0.001), (("start", "preprocess"), 0.003),
             (("end", "preprocess"), 0.004), (("wait", None), 0.005), (("start", "inference"), 0.006),
             (("end", "inference"), 0.007), (("start", "postprocess"), 0.008), (("end", "postprocess"), 0.0)]
    for (kind, stage), gap in steps:
        if kind == "wait":
            m.infer_wait_start = c.now_ns()
        else:
            getattr(m, kind)[stage] = c.now_ns()
        c.advance(gap)
    return m


def test_fake_clock_moves_only_when_told() -> None:
    c = FakeClock(5)
    assert c.now_ns() == 5
    c.advance(0.5)
    assert c.now_ns() == 5 + 500_000_000


def test_stage_and_wait_seconds_are_exact() -> None:
    m = make_marks()
    assert m.stage_seconds("decode") == 0.002
    assert m.stage_seconds("preprocess") == 0.003
    assert m.stage_seconds("inference") == 0.006
    assert m.stage_seconds("postprocess") == 0.008
    assert m.waits_seconds() == {"preprocess": 0.001, "inference": 0.004, "infer_wait": 0.005, "postprocess": 0.007}


def test_e2e_is_stages_plus_waits_without_gaps() -> None:
    m = make_marks()
    stages = sum(m.stage_seconds(s) for s in ("decode", "preprocess", "inference", "postprocess"))
    assert abs(m.e2e_seconds() - (stages + sum(m.waits_seconds().values()))) < 1e-12
    assert abs(m.e2e_seconds() - 0.036) < 1e-12


def test_missing_marks_give_none() -> None:
    m = Marks()
    m.start["decode"] = 0
    assert m.stage_seconds("decode") is None
    assert m.e2e_seconds() is None
    assert m.waits_seconds() == {}
