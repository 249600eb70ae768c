"""The typed report: built from real recorders, written as JSON and read back equal; older files read;
bad files refused with one line that says what is wrong; files written with an ordinary mode."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_marks_and_clock import make_marks
from vidprof.pipeline.config import Injection, RunConfig
from vidprof.profiling.errors import RunError
from vidprof.profiling.marks import STAGES, WAITS
from vidprof.profiling.recorder import Recorder, Transfer
from vidprof.profiling.report import (
    SCHEMA_VERSION,
    InjectedDelay,
    RunReport,
    StageStats,
    StreamFpsSpread,
    read_report,
    write_json,
    write_report,
)
from vidprof.profiling.stats import Stats
from vidprof.profiling.summary import RunInfo, StreamInfo, Summary
from vidprof.stages.preprocess import PreprocessOptions

# The top-level keys a report file has always had, in the order they are written.
KEYS = ["vidprof_report", "frames", "wall_seconds", "fps", "stages", "waits", "e2e", "unaccounted", "transfer",
        "startup", "memory", "perf_counters", "stage_attribution", "busy", "bottleneck", "config", "fault",
        "first_error", "interrupted", "streams", "stream_fps", "inject", "timeline", "model_only_fps",
        "native_log", "slowest"]
STREAM_KEYS = ["source", "kind", "frames", "seconds", "fps", "stages", "waits", "e2e", "busy", "bottleneck",
               "fault", "first_error", "failed_reasons", "outages", "outage_count", "reconnects"]


def recorder(completed: int, dropped: int = 0, failed: int = 0) -> Recorder:
    r = Recorder(None)
    for _ in range(completed):
        r.frame_done(make_marks(), Transfer(h2d_bytes=1000, h2d_ns=20_000, d2h_bytes=64, d2h_ns=3_000), failed=False)
    for _ in range(failed):
        r.frame_done(make_marks(), Transfer(), failed=True, error="postprocess: boom")
    for _ in range(dropped):
        r.frame_dropped(make_marks())
    return r


def built() -> Summary:
    """A two-stream run the way the runner summarises one, config and all."""
    cfg = RunConfig(sources=("a.mp4", "rtsp://cam"), preprocess_options=PreprocessOptions("rgb", (1.0, 2.0, 3.0)),
                    inject=(Injection("postprocess", 0.008),))
    info = RunInfo(wall_seconds=2.0, frames_read=19, nireq=4, startup={"read_model": 0.01, "compile": 0.2,
                                                                      "cache": "off"},
                   memory={"after_compile_rss_bytes": 100 << 20, "peak_rss_bytes": 120 << 20},
                   config={**cfg.to_dict(), "source": "2 streams: a.mp4, rtsp://cam", "source_kind": "file"})
    a, b = recorder(10, dropped=2), recorder(5, failed=2)
    streams = [StreamInfo("0", "a.mp4", "file", 12, None, a, 2.0),
               StreamInfo("1", "rtsp://cam", "url", 7, "stream 1: source lost", b, 1.5)]
    perf = {"sampled_requests": 3, "device_seconds": Stats.of([0.004, 0.005]).to_dict(), "node_types": {"Conv": 0.003},
            "preprocess_nodes_seconds": None, "error": None}
    s = Summary.build([a, b], info, perf, streams,
                      inject={"postprocess": InjectedDelay(0.008, False, StageStats.of([0.0081]))},
                      timeline=[{"t": 1.0, "fps": 7.0, "e2e": {"p50": 0.036, "p95": 0.036, "p99": 0.036}},
                                {"t": 2.0, "fps": 8.0, "e2e": None}])
    # What the CLI adds afterwards.
    return Summary(dataclasses.replace(s.run_report, model_only_fps=250.5))


def test_built_report_has_the_written_keys_and_figures() -> None:
    r = built().run_report
    doc = r.to_json()
    assert list(doc) == KEYS and doc["vidprof_report"] == SCHEMA_VERSION == 3
    assert all(list(s) == STREAM_KEYS for s in doc["streams"].values())
    assert (r.frames.completed, r.frames.dropped, r.frames.failed, r.frames.read) == (15, 2, 2, 19)
    assert r.fps == 7.5 and set(r.stages) == set(STAGES) and set(r.waits) == set(WAITS)
    assert r.e2e.count == 15 and r.e2e.p50 == pytest.approx(0.036)
    assert r.transfer.host_to_device.bytes == 15_000 and r.transfer.device_to_host.per_frame.mean == pytest.approx(3e-6)
    assert r.streams["1"].fault == "stream 1: source lost" and r.streams["1"].first_error == "postprocess: boom"
    assert r.streams["0"].fps == 5.0 and r.streams["1"].fps == pytest.approx(5 / 1.5)
    assert r.stream_fps == StreamFpsSpread(5 / 1.5, 5.0, 5 / 1.5 / 5.0)
    assert r.inject["postprocess"].actual.count == 1 and r.model_only_fps == 250.5 and len(r.timeline) == 2
    assert r.config["preprocess_options"]["mean"] == [1.0, 2.0, 3.0]  # as the file holds it: a list


def test_round_trip_through_json_text_and_a_file(tmp_path: Path) -> None:
    r = built().run_report
    assert RunReport.from_json(json.loads(json.dumps(r.to_json()))) == r
    write_report(str(tmp_path / "r.json"), r)
    assert read_report(str(tmp_path / "r.json")) == r
    # The JSON document (what Summary.report reads) is written the same way.
    write_report(str(tmp_path / "d.json"), built().report)
    assert read_report(str(tmp_path / "d.json")) == r


def test_the_json_document_is_a_copy_to_read() -> None:
    """Summary.report is the document for reading; changing it changes nothing (the typed report is replaced
    with dataclasses.replace), and an invalid value is refused when it is read back."""
    s = built()
    doc = s.report
    doc["interrupted"] = True
    assert s.run_report.interrupted is False and s.report["interrupted"] is False
    doc["model_only_fps"] = "fast"
    with pytest.raises(RunError, match="model_only_fps is 'fast', not a number"):
        RunReport.from_json(doc)


def test_keys_this_version_does_not_know_are_kept() -> None:
    doc = built().run_report.to_json()
    doc["capture_seconds"] = 1.9
    doc["streams"]["0"]["restarts"] = 2
    r = RunReport.from_json(doc)
    assert r.extra == {"capture_seconds": 1.9} and r.streams["0"].extra == {"restarts": 2}
    assert r.to_json() == doc


# --------------------------------------------------------------------------- version 1
def v1(doc: dict[str, Any]) -> dict[str, Any]:
    """The same run as a version-1 file from before several streams."""
    out = {k: v for k, v in doc.items() if k not in ("streams", "stream_fps")}
    out["vidprof_report"] = 1
    return out


def single_stream() -> RunReport:
    rec = recorder(4, failed=1)
    info = RunInfo(wall_seconds=2.0, frames_read=5, nireq=1, config={"source": "clip.mp4", "source_kind": "file"})
    return Summary.build([rec], info, None, [StreamInfo("0", "clip.mp4", "file", 5, None, rec, 2.0)]).run_report


def test_version_1_reads_as_one_stream_named_0() -> None:
    now = single_stream()
    old = RunReport.from_json(v1(now.to_json()))
    # A one-stream run of today and the same run in a version-1 file are the same report.
    assert old == now
    assert list(old.streams) == ["0"] and old.streams["0"].frames == now.frames
    assert old.stream_fps == StreamFpsSpread(2.0, 2.0, 1.0)


def test_version_1_without_the_keys_added_along_the_way() -> None:
    doc = v1(single_stream().to_json())
    for key in ("waits", "unaccounted", "memory", "perf_counters", "stage_attribution", "config", "fault",
                "first_error", "interrupted", "inject", "timeline", "model_only_fps"):
        del doc[key]
    del doc["frames"]["read"]
    r = RunReport.from_json(doc)
    assert r.frames.read is None and r.waits == {} and r.unaccounted == StageStats(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert r.timeline == () and r.streams["0"].source == "" and r.streams["0"].fps == r.fps


def test_version_1_with_streams_keeps_them() -> None:
    """Files written by the first multi-stream runner still said version 1."""
    doc = built().run_report.to_json()
    doc["vidprof_report"] = 1
    assert RunReport.from_json(doc) == built().run_report


# --------------------------------------------------------------------------- bad documents
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        d = doc
        for p in parents:
            d = d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
        return doc
    return edit


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda d: [d], "JSON without a vidprof_report field"),
    (lambda d: {"vidprof_tune": 1, "results": []}, "a `vidprof tune` report"),
    (_set("vidprof_report", KeyError), "JSON without a vidprof_report field"),
    (_set("vidprof_report", "2"), "vidprof_report is '2'; expected a schema version from 1 to 3"),
    (_set("vidprof_report", 0), "vidprof_report is 0; expected a schema version from 1 to 3"),
    (_set("vidprof_report", True), "vidprof_report is True; expected a schema version"),
    (_set("vidprof_report", 4), "schema version 4, newer than this vidprof reads (1 to 3); upgrade vidprof"),
    (_set("wall_seconds", KeyError), "missing wall_seconds; expected a complete file"),
    (_set("streams", KeyError), "missing streams; expected a complete file"),
    (_set("e2e.p99", KeyError), "missing e2e.p99; expected a complete file"),
    (_set("streams.1.frames.completed", KeyError), "missing streams.1.frames.completed"),
    (_set("fps", "fast"), "fps is 'fast', not a number"),
    (_set("frames.failed", 1.5), "frames.failed is 1.5, not a whole number"),
    (_set("stages.decode", [1, 2]), "stages.decode is a list, not an object"),
    (_set("bottleneck.stage", None), "bottleneck.stage is null, not a string"),
    (_set("interrupted", "no"), "interrupted is 'no', not true or false"),
    (_set("timeline", {}), "timeline is an object, not a list of rows"),
    (_set("inject.postprocess.busy", 1), "inject.postprocess.busy is 1, not true or false"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_bad_documents_are_refused_with_one_line(edit: Callable[[dict[str, Any]], Any], fragment: str,
                                                 tmp_path: Path) -> None:
    doc = edit(copy.deepcopy(built().run_report.to_json()))
    with pytest.raises(RunError) as e:
        RunReport.from_json(doc)
    assert fragment in str(e.value) and str(e.value).startswith("report: ") and "\n" not in str(e.value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RunError) as e:
        read_report(str(path))
    assert str(e.value).startswith(f"report {path}: ") and fragment in str(e.value)


# --------------------------------------------------------------------------- file modes
@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_open_would_give(umask: Callable[[int], None], tmp_path: Path, mask: int,
                                                  expected: int) -> None:
    umask(mask)
    write_json(str(tmp_path / "new.json"), {"a": 1})
    with open(tmp_path / "plain.json", "w") as f:
        f.write("{}")
    assert mode(tmp_path / "new.json") == mode(tmp_path / "plain.json") == expected


def test_an_existing_file_keeps_its_mode_and_no_temporary_file_is_left(umask: Callable[[int], None],
                                                                       tmp_path: Path) -> None:
    umask(0o022)
    path = tmp_path / "r.json"
    path.write_text("{}")
    path.chmod(0o640)
    write_json(str(path), {"b": 2})
    assert mode(path) == 0o640 and json.loads(path.read_text()) == {"b": 2}
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError):
        write_json(str(path), loop)  # fails halfway: the old file stays, whole
    assert json.loads(path.read_text()) == {"b": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
