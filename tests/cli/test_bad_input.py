"""Bad input, as a user types it: one table, each row a real `vidprof` subprocess in a scratch folder.

Every row must end the same way: the documented exit code (2 for an impossible setting, 1 for a runtime
failure), exactly one line on stderr, ``vidprof: error: ...``, naming what went wrong, nothing before it
(no metrics address, no sample-model note, no native library lines), nothing on stdout, no traceback, and
nothing written or left behind in the folder (no report, no temporary file, no text file).

The runs are kept small (a 64x64 synthetic source, 2 frames, a tiny model, no /metrics server) so the
whole table runs in about a minute; most rows fail before OpenVINO compiles anything.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = "synthetic:64x64@30"


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # after the command; "{name}" placeholders are filled from the inputs fixture
    code: int
    fragment: str  # must appear in the error line
    command: str = "run"
    metrics: bool = False  # run without --no-metrics (the metrics options are what is tested)
    absent: str | None = None  # must NOT appear in the error line (the wrong culprit)
    after_run: bool = False  # fails only after a completed run: the summary and the report are expected

    def argv(self, inputs: dict[str, str]) -> list[str]:
        args = [a.format(**inputs) for a in self.args]
        if self.command != "run":
            return [self.command, *args]
        base = ["run", "--frames", "2"] + ([] if self.metrics else ["--no-metrics"])
        if "--source" not in args:
            base += ["--source", SOURCE]
        if "--model" not in args:
            base += ["--model", inputs["det"]]
        return [*base, *args]


def run(id: str, *args: str, code: int, fragment: str, **kw: object) -> Case:
    return Case(id, args, code, fragment, **kw)  # type: ignore[arg-type]


def cmd(command: str, id: str, *args: str, code: int, fragment: str) -> Case:
    return Case(id, args, code, fragment, command=command)


CASES = [
    # ------------------------------------------------------------------ how much to run
    run("frames-zero", "--frames", "0", code=2, fragment="--frames 0: expected a positive number"),
    run("frames-negative", "--frames", "-3", code=2, fragment="--frames -3"),
    run("frames-not-a-number", "--frames", "abc", code=2, fragment="invalid int value: 'abc'"),
    run("duration-zero", "--duration", "0", code=2, fragment="--duration 0"),
    run("duration-negative", "--duration=-1", code=2, fragment="--duration -1"),
    run("duration-inf", "--duration", "inf", code=2, fragment="--duration inf: expected a positive, finite"),
    run("duration-nan", "--duration", "nan", code=2, fragment="--duration nan"),
    run("duration-not-a-number", "--duration", "abc", code=2, fragment="expected a number of seconds, got 'abc'"),
    # ------------------------------------------------------------------ streams and pacing
    run("copies-zero", "--copies", "0", code=2, fragment="--copies 0"),
    run("stream-bad-characters", "--stream", "cam 1", code=2, fragment="--stream 'cam 1': expected 1-64"),
    run("stream-duplicate-names", "--copies", "2", "--stream", "a", "--stream", "a", code=2,
        fragment="two streams are named 'a'"),
    run("stream-more-names-than-streams", "--stream", "a", "--stream", "b", code=2,
        fragment="--stream given 2 times for 1 streams"),
    run("realtime-fps-zero", "--realtime-fps", "0", code=2, fragment="--realtime-fps 0"),
    run("realtime-fps-with-a-url", "--realtime-fps", "30", "--source", "rtsp://127.0.0.1:9/cam", code=2,
        fragment="a camera or stream keeps its own pace"),
    run("open-timeout-zero", "--open-timeout", "0", code=2, fragment="--open-timeout 0"),
    run("read-timeout-too-long", "--read-timeout", "1000", code=2, fragment="--read-timeout 1000"),
    run("reconnect-delay-negative", "--reconnect-delay=-1", code=2, fragment="--reconnect-delay -1"),
    # ------------------------------------------------------------------ inference settings
    run("nireq-zero", "--nireq", "0", code=2, fragment="--nireq 0"),
    run("nireq-with-sync", "--nireq", "64", "--sync", code=2, fragment="--nireq 64 with --sync"),
    run("streams-zero", "--streams", "0", code=2, fragment="--streams 0"),
    # With /metrics on: the server is bound before the model compiles, yet its address is not announced.
    run("streams-beyond-the-device", "--streams", "10000", "--metrics-port", "0", code=1,
        fragment="--streams 10000: CPU runs 1 to", metrics=True),
    run("hint-unknown", "--hint", "bogus", "--metrics-port", "0", code=2, fragment="--hint 'bogus': expected one of",
        metrics=True),
    run("infer-precision-unknown", "--infer-precision", "bogus", code=2, fragment="--infer-precision 'bogus'"),
    run("device-missing", "--device", "NOPE", code=1, fragment="NOPE is not available here"),
    run("cache-dir-is-a-file", "--cache-dir", "{a_file}", code=1, fragment="is a file; expected a folder"),
    run("cache-dir-in-a-missing-folder", "--cache-dir", "missing/cache", code=1, fragment="does not exist"),
    run("cache-dir-unwritable", "--cache-dir", "{unwritable}/cache", code=1, fragment="is not writable"),
    # ------------------------------------------------------------------ preprocessing
    run("preprocess-unknown", "--preprocess", "bogus", code=2, fragment="--preprocess 'bogus'"),
    run("model-color-unknown", "--model-color", "bogus", code=2, fragment="--model-color 'bogus'"),
    run("mean-two-values", "--mean", "1,2", code=2, fragment="expected 1 or 3 comma-separated numbers"),
    run("mean-not-numbers", "--mean", "1,x", code=2, fragment="expected comma-separated numbers for --mean"),
    run("scale-zero", "--scale", "0", code=2, fragment="--scale: expected non-zero"),
    run("scale-nan", "--scale", "nan", code=2, fragment="--scale nan: expected finite numbers"),
    run("mean-with-a-u8-model", "--mean", "1,2,3", "--model", "{det_u8}", code=2, fragment="is u8"),
    # ------------------------------------------------------------------ postprocessing
    run("postprocess-unknown", "--postprocess", "bogus", code=2, fragment="--postprocess 'bogus'"),
    run("postprocess-does-not-fit", "--postprocess", "classification", code=1, fragment="do not fit it"),
    run("threshold-above-one", "--threshold", "2", code=2, fragment="--threshold 2"),
    run("iou-zero", "--iou", "0", code=2, fragment="--iou 0"),
    run("top-k-zero", "--top-k", "0", code=2, fragment="--top-k 0"),
    run("inject-no-equals", "--inject", "bogus", code=2, fragment="expected STAGE=DURATION"),
    run("inject-unknown-stage", "--inject", "render=5ms", code=2, fragment="unknown stage"),
    run("inject-too-long", "--inject", "postprocess=100s", code=2, fragment="between 0 and 10 s"),
    # ------------------------------------------------------------------ the model
    run("model-missing", "--model", "nowhere.xml", code=1, fragment="model nowhere.xml: no such file"),
    run("model-is-a-folder", "--model", "{model_dir}", code=1, fragment="is a folder; expected a model file",
        absent="saved_model.pb"),
    run("model-is-text", "--model", "{notes}", code=1, fragment="cannot read model"),
    run("model-with-two-inputs", "--model", "{two}", code=1, fragment="expected exactly one image input"),
    # ------------------------------------------------------------------ the source
    run("source-missing", "--source", "nowhere.mp4", code=1, fragment="source nowhere.mp4: no such file"),
    run("source-folder-without-images", "--source", "{empty_dir}", code=1, fragment="found none"),
    # FFmpeg's own complaints about the file go into the message, not onto the terminal before it.
    run("source-random-bytes", "--source", "{noise}", "--metrics-port", "0", code=1,
        fragment="expected a readable video file", metrics=True),
    run("source-synthetic-0x0", "--source", "synthetic:0x0", code=2, fragment="16..8192"),
    run("source-synthetic-not-a-size", "--source", "synthetic:abc", code=2, fragment="synthetic:WIDTHxHEIGHT"),
    run("source-empty", "--source", "", code=2, fragment="--source '': expected"),
    # ------------------------------------------------------------------ metrics
    run("metrics-port-out-of-range", "--metrics-port", "70000", code=2, fragment="--metrics-port 70000",
        metrics=True),
    run("metrics-port-busy", "--metrics-port", "{busy_port}", code=1, fragment="cannot listen", metrics=True),
    run("metrics-host-unresolvable", "--metrics-host", "not.an.address", code=1,
        fragment="--metrics-host not.an.address", absent="--metrics-port", metrics=True),
    run("metrics-port-with-no-metrics", "--metrics-port", "9000", code=2, fragment="with --no-metrics"),
    run("linger-negative", "--linger=-1", code=2, fragment="--linger -1"),
    run("linger-nan", "--linger", "nan", code=2, fragment="--linger nan"),
    run("push-interval-zero", "--push-interval", "0", code=2, fragment="--push-interval 0"),
    run("model-only-seconds-inf", "--model-only-seconds", "inf", code=2, fragment="--model-only-seconds inf"),
    run("web-config-missing", "--web-config", "nowhere.yml", "--metrics-port", "0", code=1,
        fragment="--web-config nowhere.yml: cannot read it", metrics=True),
    run("pipeline-name-bad-characters", "--pipeline-name", "a/b", code=2, fragment="--pipeline-name 'a/b'"),
    run("queue-size-zero", "--queue-size", "0", code=2, fragment="--queue-size 0"),
    run("warmup-negative", "--warmup=-1", code=2, fragment="--warmup -1"),
    run("pushgateway-closed-port", "--pushgateway", "http://127.0.0.1:{closed_port}", "--report", "run.json",
        code=1, fragment="--pushgateway http://127.0.0.1:", after_run=True),
    # ------------------------------------------------------------------ output paths, checked before the run
    run("report-in-a-missing-folder", "--report", "missing/run.json", code=1, fragment="does not exist"),
    run("report-is-a-folder", "--report", "{empty_dir}", code=1, fragment="is a folder"),
    run("report-under-a-file", "--report", "{a_file}/run.json", code=1, fragment="is a file, not a folder"),
    run("report-in-an-unwritable-folder", "--report", "{unwritable}/run.json", code=1, fragment="is not writable"),
    run("report-empty-path", "--report", "", code=2, fragment="--report '': expected a file path"),
    run("textfile-in-a-missing-folder", "--metrics-textfile", "missing/m.prom", code=1,
        fragment="--metrics-textfile missing/m.prom: folder"),
    run("textfile-is-a-folder", "--metrics-textfile", "{empty_dir}", code=1, fragment="is a folder"),
    run("textfile-empty-path", "--metrics-textfile", "", code=2, fragment="--metrics-textfile '': expected"),
    run("dump-outputs-in-a-missing-folder", "--dump-outputs", "missing/o.npz", code=1,
        fragment="--dump-outputs missing/o.npz: folder"),
    # ------------------------------------------------------------------ tune, density, report
    cmd("tune", "tune-without-grid", "--source", SOURCE, "--model", "{det}", code=2,
        fragment="needs at least one --grid"),
    cmd("tune", "tune-unknown-grid-key", "--grid", "bogus=1", "--source", SOURCE, "--model", "{det}", code=2,
        fragment="--grid bogus=...: unknown key"),
    cmd("tune", "tune-batch-zero", "--grid", "batch=0", "--source", SOURCE, "--model", "{det}", code=2,
        fragment="--grid batch=0: expected a positive whole number"),
    cmd("tune", "tune-nireq-with-sync", "--grid", "nireq=1,2", "--grid", "sync=true,false", "--source", SOURCE,
        "--model", "{det}", "--frames", "2", code=2, fragment="--grid nireq=2 with --grid sync=true"),
    cmd("tune", "tune-report-in-a-missing-folder", "--grid", "nireq=1,2", "--report", "missing/t.json",
        "--source", SOURCE, "--model", "{det}", code=1, fragment="does not exist"),
    cmd("tune", "tune-csv-is-a-folder", "--grid", "nireq=1,2", "--csv", "{empty_dir}", "--source", SOURCE,
        "--model", "{det}", code=1, fragment="--csv"),
    cmd("density", "density-target-fps-zero", "--target-fps", "0", "--source", SOURCE, "--model", "{det}", code=2,
        fragment="--target-fps 0"),
    cmd("density", "density-report-is-a-folder", "--report", "{empty_dir}", "--source", SOURCE, "--model", "{det}",
        code=1, fragment="is a folder"),
    cmd("report", "report-missing-file", "nowhere.json", code=1, fragment="no such file"),
    cmd("report", "report-not-json", "{notes}", code=1, fragment="not valid JSON"),
    cmd("report", "report-of-a-tune", "{tune_report}", code=1, fragment="a `vidprof tune` report"),
    cmd("report", "report-command-on-a-folder", "{empty_dir}", code=1, fragment="is a folder"),
]


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def inputs(tmp_path: Path, detector: str, make_model: Callable[..., str], two_input_model: str) -> Iterator[dict]:
    """The bad (and good) inputs the table names, made in the scratch folder the CLI runs in."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "model_dir").mkdir()
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "notes.txt").write_text("hello, not a model and not JSON\n")
    (tmp_path / "clip.mp4").write_bytes(os.urandom(64 * 1024))  # a video by its name only
    (tmp_path / "tune.json").write_text(json.dumps({"vidprof_tune": 1, "grid": {"nireq": ["1", "2"]},
                                                    "results": []}))
    if os.geteuid() == 0:
        # Root writes through permission bits; /proc refuses new files to everyone.
        unwritable = "/proc"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        unwritable = str(locked)
    busy = socket.socket()  # listening: a port that is taken
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    closed = socket.socket()  # bound, never listening, then closed: nothing answers on it
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        yield {
            "det": detector, "det_u8": make_model(element_type="u8"), "two": two_input_model,
            "empty_dir": "empty", "model_dir": "model_dir", "a_file": "a_file", "notes": "notes.txt",
            "noise": "clip.mp4", "tune_report": "tune.json", "unwritable": unwritable,
            "busy_port": str(busy.getsockname()[1]), "closed_port": str(closed_port),
        }
    finally:
        busy.close()
        if unwritable != "/proc":
            Path(unwritable).chmod(0o700)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line(run_cli, inputs: dict[str, str], tmp_path: Path, case: Case) -> None:
    before = _listing(tmp_path)
    r = run_cli(*case.argv(inputs), timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("vidprof: error:")]
    assert len(errors) == 1, r.stderr
    line = errors[0]
    assert r.returncode == case.code, r.stderr
    assert case.fragment in line, line
    if case.absent is not None:
        assert case.absent not in line, line
    if case.after_run:
        # The run itself completed: its summary and report stand, and the failure is the last word.
        assert lines[-1] == line, r.stderr
        assert (tmp_path / "run.json").is_file()
        assert _listing(tmp_path) - before == {"run.json"}
        return
    # Nothing of a successful start, nor any native library's line, before (or after) the error.
    assert lines == [line], r.stderr
    assert r.stdout == "", r.stdout
    assert _listing(tmp_path) == before, "left behind: " + ", ".join(sorted(_listing(tmp_path) - before))


def test_the_table_covers_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
