"""The JSON report: the run's summary as typed, frozen dataclasses, written atomically in base units
(seconds, bytes) and read back with validation.

The console, the HTML page, ``vidprof tune`` and the CLI read these attributes; only ``to_json`` and
``from_json`` know the JSON keys, so a renamed or missing key is found in one place, not in each reader.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from vidprof.profiling.errors import RunError
from vidprof.profiling.figures import Figure
from vidprof.profiling.stats import Stats

# 2: per-stream figures (``streams``) and their spread (``stream_fps``). Version-1 files are still read;
# a run without ``streams`` becomes one stream named "0".
SCHEMA_VERSION = 3  # 3: p95 in place of p90; 2: streams and stream_fps
VERSION_KEY = "vidprof_report"
WRITTEN_BY = "`vidprof run --report`"

# Top-level keys every version has always written; the rest have defaults (older files lack some).
REQUIRED = ("frames", "wall_seconds", "fps", "stages", "e2e", "transfer", "startup", "busy", "bottleneck")
REQUIRED_V2 = (*REQUIRED, "streams", "stream_fps")

T = TypeVar("T")


# ----------------------------------------------------------------- reading JSON values, naming the culprit
class _Invalid(Exception):
    """One problem in a document, with the dotted path to it; ``from_json`` turns it into a RunError."""

    def __init__(self, where: str, arrived: Any = None, expected: str | None = None) -> None:
        super().__init__(where)
        self.where, self.arrived, self.expected = where, arrived, expected


def _show(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _key(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise _Invalid(f"{where}.{key}" if where else key)
    return d[key]


def _obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Invalid(where, v, "an object")
    return v


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Invalid(where, v, "a number")
    return float(v)


def _int(v: Any, where: str) -> int:
    # A count written by hand as 3.0 is still 3; 3.5 is not a count.
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Invalid(where, v, "a whole number")
    return v


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _Invalid(where, v, "true or false")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise _Invalid(where, v, "a string")
    return v


def _opt(read: Callable[[Any, str], T]) -> Callable[[Any, str], T | None]:
    return lambda v, where: None if v is None else read(v, where)


def _table(v: Any, where: str, read: Callable[[Any, str], T]) -> dict[str, T]:
    return {str(k): read(x, f"{where}.{k}") for k, x in _obj(v, where).items()}


def _extra(d: Mapping[str, Any], known: Sequence[str]) -> dict[str, Any]:
    # Keys this version does not know are kept and written back, so a newer writer's figures (or a
    # note added by hand) survive a read-modify-write by this one.
    return {k: v for k, v in d.items() if k not in known and k != VERSION_KEY}


# ----------------------------------------------------------------- the report's parts
@dataclass(frozen=True)
class StageStats:
    """count, mean, p50, p95, p99, max of one figure, in seconds (count: frames).

    p95 is None in a report of schema 2 or older, which had p90 instead (not the same figure)."""

    count: int
    mean: float
    p50: float
    p95: float | None
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float] | Figure) -> StageStats:
        return cls.from_stats(values.stats() if isinstance(values, Figure) else Stats.of(values))

    @classmethod
    def from_stats(cls, s: Stats) -> StageStats:
        return cls(s.count, s.mean, s.p50, s.p95, s.p99, s.max)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def _read(cls, v: Any, where: str) -> StageStats:
        d = _obj(v, where)
        mean, p50, p99, top = (_num(_key(d, k, where), f"{where}.{k}") for k in ("mean", "p50", "p99", "max"))
        p95 = _num(d["p95"], f"{where}.p95") if "p95" in d else None
        return cls(_int(_key(d, "count", where), f"{where}.count"), mean, p50, p95, p99, top)


EMPTY_STATS = StageStats(0, 0.0, 0.0, 0.0, 0.0, 0.0)  # what Stats.of gives for no samples


@dataclass(frozen=True)
class FrameCounts:
    """Frames of a run (or of one stream): completed + dropped + failed = read once drained."""

    completed: int
    dropped: int
    failed: int
    read: int | None = None  # None: a version-1 file written before frames were counted at the source

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def _read(cls, v: Any, where: str) -> FrameCounts:
        d = _obj(v, where)
        counts = [_int(_key(d, k, where), f"{where}.{k}") for k in ("completed", "dropped", "failed")]
        return cls(*counts, _opt(_int)(d.get("read"), f"{where}.read"))


@dataclass(frozen=True)
class TransferDirection:
    """One direction of host<->device traffic: total bytes and seconds, and the seconds per frame."""

    bytes: int
    seconds: float
    per_frame: StageStats

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "seconds": self.seconds, "per_frame": self.per_frame.to_json()}

    @classmethod
    def _read(cls, v: Any, where: str) -> TransferDirection:
        d = _obj(v, where)
        return cls(_int(_key(d, "bytes", where), f"{where}.bytes"),
                   _num(_key(d, "seconds", where), f"{where}.seconds"),
                   StageStats._read(_key(d, "per_frame", where), f"{where}.per_frame"))


@dataclass(frozen=True)
class Transfer:
    host_to_device: TransferDirection
    device_to_host: TransferDirection

    def to_json(self) -> dict[str, Any]:
        return {"host_to_device": self.host_to_device.to_json(), "device_to_host": self.device_to_host.to_json()}

    @classmethod
    def _read(cls, v: Any, where: str) -> Transfer:
        d = _obj(v, where)
        return cls(*(TransferDirection._read(_key(d, k, where), f"{where}.{k}")
                     for k in ("host_to_device", "device_to_host")))


@dataclass(frozen=True)
class Bottleneck:
    """The stage that limits throughput, how busy it is, and one sentence of advice."""

    stage: str
    busy_ratio: float
    advice: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def _read(cls, v: Any, where: str) -> Bottleneck:
        d = _obj(v, where)
        return cls(_str(_key(d, "stage", where), f"{where}.stage"),
                   _num(_key(d, "busy_ratio", where), f"{where}.busy_ratio"),
                   _str(_key(d, "advice", where), f"{where}.advice"))


@dataclass(frozen=True)
class InjectedDelay:
    """A what-if delay (``--inject``): the one asked for, and what it really took per frame."""

    nominal: float
    busy: bool
    actual: StageStats

    def to_json(self) -> dict[str, Any]:
        return {"nominal": self.nominal, "busy": self.busy, "actual": self.actual.to_json()}

    @classmethod
    def _read(cls, v: Any, where: str) -> InjectedDelay:
        d = _obj(v, where)
        return cls(_num(_key(d, "nominal", where), f"{where}.nominal"),
                   _bool(_key(d, "busy", where), f"{where}.busy"),
                   StageStats._read(_key(d, "actual", where), f"{where}.actual"))


_STREAM_KEYS = ("source", "kind", "frames", "seconds", "fps", "stages", "waits", "e2e", "busy", "bottleneck",
                "fault", "first_error", "failed_reasons", "outages", "outage_count", "reconnects")


@dataclass(frozen=True)
class Outage:
    """A live source that stopped delivering: when (seconds since the run started), for how long (None: it
    lasted until the run ended), why, and how many reconnection attempts it took."""

    start: float
    seconds: float | None
    reason: str
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "seconds": self.seconds, "reason": self.reason, "attempts": self.attempts}

    @classmethod
    def _read(cls, v: Any, where: str) -> Outage:
        d = _obj(v, where)
        return cls(_num(_key(d, "start", where), f"{where}.start"), _opt(_num)(d.get("seconds"), f"{where}.seconds"),
                   _str(_key(d, "reason", where), f"{where}.reason"), _int(d.get("attempts", 0), f"{where}.attempts"))


@dataclass(frozen=True)
class StreamReport:
    """One stream's figures: the aggregate's, for this stream alone."""

    source: str
    kind: str
    frames: FrameCounts
    seconds: float  # from the run's start to this stream's end
    fps: float
    stages: dict[str, StageStats]
    waits: dict[str, StageStats]
    e2e: StageStats
    busy: dict[str, float]
    bottleneck: Bottleneck
    fault: str | None = None
    first_error: str | None = None
    failed_reasons: dict[str, int] = field(default_factory=dict)  # reason (a fixed set) -> failed frames
    outages: tuple[Outage, ...] = ()  # the last ones (a stream that flaps for days keeps the last 100)
    outage_count: int = 0  # all of them
    reconnects: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "kind": self.kind, "frames": self.frames.to_json(), "seconds": self.seconds,
            "fps": self.fps, "stages": {k: s.to_json() for k, s in self.stages.items()},
            "waits": {k: s.to_json() for k, s in self.waits.items()}, "e2e": self.e2e.to_json(),
            "busy": dict(self.busy), "bottleneck": self.bottleneck.to_json(), "fault": self.fault,
            "first_error": self.first_error, "failed_reasons": dict(self.failed_reasons),
            "outages": [o.to_json() for o in self.outages], "outage_count": self.outage_count,
            "reconnects": self.reconnects, **self.extra,
        }

    @classmethod
    def _read(cls, v: Any, where: str) -> StreamReport:
        d = _obj(v, where)

        def get(k: str) -> Any:
            return _key(d, k, where)

        return cls(
            source=_str(get("source"), f"{where}.source"), kind=_str(get("kind"), f"{where}.kind"),
            frames=FrameCounts._read(get("frames"), f"{where}.frames"),
            seconds=_num(get("seconds"), f"{where}.seconds"), fps=_num(get("fps"), f"{where}.fps"),
            stages=_table(get("stages"), f"{where}.stages", StageStats._read),
            waits=_table(get("waits"), f"{where}.waits", StageStats._read),
            e2e=StageStats._read(get("e2e"), f"{where}.e2e"), busy=_table(get("busy"), f"{where}.busy", _num),
            bottleneck=Bottleneck._read(get("bottleneck"), f"{where}.bottleneck"),
            fault=_opt(_str)(d.get("fault"), f"{where}.fault"),
            first_error=_opt(_str)(d.get("first_error"), f"{where}.first_error"),
            failed_reasons=_table(d.get("failed_reasons", {}), f"{where}.failed_reasons", _int),
            outages=tuple(Outage._read(o, f"{where}.outages[{i}]") for i, o in enumerate(d.get("outages", []))),
            outage_count=_int(d.get("outage_count", 0), f"{where}.outage_count"),
            reconnects=_int(d.get("reconnects", 0), f"{where}.reconnects"),
            extra=_extra(d, _STREAM_KEYS),
        )


@dataclass(frozen=True)
class StreamFpsSpread:
    """The spread of FPS between streams: with equal sources, a low ratio means one stream starved."""

    min: float
    max: float
    ratio: float  # slowest / fastest; 0 when no stream completed a frame

    @classmethod
    def of(cls, fps: Sequence[float]) -> StreamFpsSpread | None:
        if not fps:
            return None
        lo, hi = min(fps), max(fps)
        return cls(lo, hi, lo / hi if hi > 0 else 0.0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def _read(cls, v: Any, where: str) -> StreamFpsSpread:
        d = _obj(v, where)
        return cls(*(_num(_key(d, k, where), f"{where}.{k}") for k in ("min", "max", "ratio")))


@dataclass(frozen=True)
class SlowFrame:
    """One of a stream's slowest frames end to end (``vidprof run --slowest K`` keeps K per stream): when it
    started (seconds from the run's start), each stage and wait in seconds, and the infer request that ran
    it. Its stages and waits add up to its ``e2e``, as every frame's do (``profiling.marks``)."""

    stream: str
    frame: int
    e2e: float
    start: float
    stages: dict[str, float]
    waits: dict[str, float]
    request: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"stream": self.stream, "frame": self.frame, "e2e": self.e2e, "start": self.start,
                "stages": dict(self.stages), "waits": dict(self.waits), "request": self.request}

    @classmethod
    def _read(cls, v: Any, where: str) -> SlowFrame:
        d = _obj(v, where)
        return cls(_str(_key(d, "stream", where), f"{where}.stream"), _int(_key(d, "frame", where), f"{where}.frame"),
                   _num(_key(d, "e2e", where), f"{where}.e2e"), _num(_key(d, "start", where), f"{where}.start"),
                   _table(_key(d, "stages", where), f"{where}.stages", _num),
                   _table(_key(d, "waits", where), f"{where}.waits", _num),
                   _opt(_int)(d.get("request"), f"{where}.request"))


_RUN_KEYS = ("frames", "wall_seconds", "fps", "stages", "waits", "e2e", "unaccounted", "transfer", "startup",
             "memory", "perf_counters", "stage_attribution", "busy", "bottleneck", "config", "fault",
             "first_error", "interrupted", "streams", "stream_fps", "inject", "timeline", "model_only_fps",
             "native_log", "slowest")


@dataclass(frozen=True)
class RunReport:
    """A run's report: the aggregate of every stream at the top level, and each stream under ``streams``.

    ``config``, ``startup``, ``memory``, ``perf_counters`` and the ``timeline`` rows stay plain JSON values
    (open-ended: what the device chose, the perf counters' node types, one row per second); they are shared
    with ``to_json``'s result, not copied, so treat them as read-only.
    """

    frames: FrameCounts
    wall_seconds: float
    fps: float  # completed frames over the wall time, all streams together
    stages: dict[str, StageStats]
    e2e: StageStats
    transfer: Transfer
    startup: dict[str, Any]  # read_model, compile, first_inference seconds; cache state; warm-up rounds
    busy: dict[str, float]  # busy time over wall time per stage (inference: per request)
    bottleneck: Bottleneck
    waits: dict[str, StageStats] = field(default_factory=dict)
    unaccounted: StageStats = EMPTY_STATS  # e2e minus stages and waits: zero unless a mark is missing
    memory: dict[str, int] = field(default_factory=dict)
    perf_counters: dict[str, Any] | None = None
    stage_attribution: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    fault: str | None = None
    first_error: str | None = None
    interrupted: bool = False
    streams: dict[str, StreamReport] = field(default_factory=dict)
    stream_fps: StreamFpsSpread | None = None
    inject: dict[str, InjectedDelay] = field(default_factory=dict)
    timeline: tuple[dict[str, Any], ...] = ()
    model_only_fps: float | None = None
    native_log: dict[str, Any] | None = None  # FFmpeg's/OpenCV's own lines: {lines: count, last: [...]}
    slowest: tuple[SlowFrame, ...] = ()  # each stream's slowest frames, slowest first; () in older files
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept

    def to_json(self) -> dict[str, Any]:
        """The document ``write_report`` writes: the keys and their order as every reader knows them."""
        return {
            VERSION_KEY: SCHEMA_VERSION,
            "frames": self.frames.to_json(),
            "wall_seconds": self.wall_seconds,
            "fps": self.fps,
            "stages": {k: s.to_json() for k, s in self.stages.items()},
            "waits": {k: s.to_json() for k, s in self.waits.items()},
            "e2e": self.e2e.to_json(),
            "unaccounted": self.unaccounted.to_json(),
            "transfer": self.transfer.to_json(),
            "startup": self.startup,
            "memory": self.memory,
            "perf_counters": self.perf_counters,
            "stage_attribution": dict(self.stage_attribution),
            "busy": dict(self.busy),
            "bottleneck": self.bottleneck.to_json(),
            "config": self.config,
            "fault": self.fault,
            "first_error": self.first_error,
            "interrupted": self.interrupted,
            "streams": {k: s.to_json() for k, s in self.streams.items()},
            "stream_fps": self.stream_fps.to_json() if self.stream_fps is not None else None,
            "inject": {k: d.to_json() for k, d in self.inject.items()},
            "timeline": list(self.timeline),
            "model_only_fps": self.model_only_fps,
            "native_log": self.native_log,
            "slowest": [f.to_json() for f in self.slowest],
            **self.extra,
        }

    @classmethod
    def from_json(cls, doc: Any, origin: str | None = None) -> RunReport:
        """Read a document written by any version of ``write_report``, checking its shape.

        ``origin`` names the document in errors (a file path). A version-1 document without ``streams``
        reads as one stream, "0", holding the whole run. Raises a one-line RunError on anything else.
        """
        at = f"report {origin}" if origin else "report"
        if isinstance(doc, dict) and "vidprof_tune" in doc:
            raise RunError(f"{at}: a `vidprof tune` report; `vidprof report` draws the report of one run "
                           "(`vidprof run --report`); rerun the recommended command with --report")
        if not isinstance(doc, dict) or VERSION_KEY not in doc:
            raise RunError(f"{at}: JSON without a {VERSION_KEY} field; expected a file written by {WRITTEN_BY}")
        version = doc[VERSION_KEY]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RunError(f"{at}: {VERSION_KEY} is {_show(version)}; expected a schema version from 1 to "
                           f"{SCHEMA_VERSION}, as {WRITTEN_BY} writes")
        if version > SCHEMA_VERSION:
            raise RunError(f"{at}: schema version {version}, newer than this vidprof reads (1 to {SCHEMA_VERSION}); "
                           "upgrade vidprof to read it")
        missing = [k for k in (REQUIRED if version == 1 else REQUIRED_V2) if k not in doc]
        if missing:
            raise RunError(f"{at}: missing {', '.join(missing)}; expected a complete file written by {WRITTEN_BY}")
        try:
            return cls._read(doc)
        except _Invalid as e:
            if e.expected is None:
                raise RunError(f"{at}: missing {e.where}; expected a complete file written by {WRITTEN_BY}") from None
            raise RunError(f"{at}: {e.where} is {_show(e.arrived)}, not {e.expected}; expected a file written by "
                           f"{WRITTEN_BY}") from None

    @classmethod
    def _read(cls, d: dict[str, Any]) -> RunReport:
        frames = FrameCounts._read(d["frames"], "frames")
        wall = _num(d["wall_seconds"], "wall_seconds")
        fps = _num(d["fps"], "fps")
        stages = _table(d["stages"], "stages", StageStats._read)
        waits = _table(d.get("waits", {}), "waits", StageStats._read)
        e2e = StageStats._read(d["e2e"], "e2e")
        busy = _table(d["busy"], "busy", _num)
        neck = Bottleneck._read(d["bottleneck"], "bottleneck")
        config = _obj(d.get("config", {}), "config")
        fault = _opt(_str)(d.get("fault"), "fault")
        first_error = _opt(_str)(d.get("first_error"), "first_error")
        if "streams" in d:
            streams = _table(d["streams"], "streams", StreamReport._read)
        else:
            # Version 1 before several streams: the run was one stream, labelled as the runner labels it.
            streams = {"0": StreamReport(str(config.get("source", "")), str(config.get("source_kind", "")), frames,
                                         wall, fps, stages, waits, e2e, busy, neck, fault, first_error)}
        if d.get("stream_fps") is not None:
            spread: StreamFpsSpread | None = StreamFpsSpread._read(d["stream_fps"], "stream_fps")
        else:
            spread = StreamFpsSpread.of([s.fps for s in streams.values()])
        timeline = d.get("timeline", [])
        if not isinstance(timeline, list):
            raise _Invalid("timeline", timeline, "a list of rows")
        return cls(
            frames=frames, wall_seconds=wall, fps=fps, stages=stages, e2e=e2e,
            transfer=Transfer._read(d["transfer"], "transfer"), startup=_obj(d["startup"], "startup"), busy=busy,
            bottleneck=neck, waits=waits,
            unaccounted=StageStats._read(d["unaccounted"], "unaccounted") if "unaccounted" in d else EMPTY_STATS,
            memory=_obj(d.get("memory", {}), "memory"),
            perf_counters=_opt(_obj)(d.get("perf_counters"), "perf_counters"),
            stage_attribution=_table(d.get("stage_attribution", {}), "stage_attribution", _num),
            config=config, fault=fault, first_error=first_error,
            interrupted=_bool(d.get("interrupted", False), "interrupted"),
            streams=streams, stream_fps=spread,
            inject=_table(d.get("inject", {}), "inject", InjectedDelay._read),
            timeline=tuple(_obj(r, f"timeline.{i}") for i, r in enumerate(timeline)),
            model_only_fps=_opt(_num)(d.get("model_only_fps"), "model_only_fps"),
            native_log=_opt(_obj)(d.get("native_log"), "native_log"),
            slowest=tuple(SlowFrame._read(f, f"slowest[{i}]") for i, f in enumerate(_slow_list(d.get("slowest", [])))),
            extra=_extra(d, _RUN_KEYS),
        )


def _slow_list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise _Invalid("slowest", v, "a list of frames")
    return v


def plain(value: Any) -> Any:
    """``value`` as it reads back from the JSON file (tuples become lists, odd types their text), so a
    report built in memory equals the same report read from its file."""
    return json.loads(json.dumps(value, default=str))


def as_report(report: RunReport | Mapping[str, Any]) -> RunReport:
    """A RunReport from either form: readers still handed the JSON dict (``Summary.report``) get the same
    checks as a file."""
    return report if isinstance(report, RunReport) else RunReport.from_json(dict(report))


# ----------------------------------------------------------------- files
def check_writable(path: str, flag: str = "--report") -> None:
    """Fail before the run, not after it, when an output file cannot be written.

    The folder is tried for real (a file created and removed at once), as the write at the end will try it:
    permission bits alone say nothing for root, a read-only mount or a pseudo-filesystem such as /proc."""
    if not path:
        from vidprof.profiling.errors import UsageError  # here: this function is the only user

        raise UsageError(f"{flag} '': expected a file path; leave {flag} out to write no file")
    if os.path.isdir(path):
        raise RunError(f"{flag} {path}: is a folder; expected a file path; name a file inside it, or choose "
                       "another path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise RunError(f"{flag} {path}: folder {folder} does not exist; create it or choose another path")
    if not os.path.isdir(folder):
        raise RunError(f"{flag} {path}: {folder} is a file, not a folder; choose a path in a folder")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise RunError(f"{flag} {path}: the file exists and is not writable; choose another path")
    try:
        fd, probe = _create_beside(path)
    except OSError as e:
        raise RunError(f"{flag} {path}: folder {folder} is not writable ({e.strerror or e}); "
                       "choose another path") from e
    os.close(fd)
    os.unlink(probe)


def write_report(path: str, report: RunReport | Mapping[str, Any]) -> None:
    write_json(path, as_report(report).to_json())


def _create_beside(path: str) -> tuple[int, str]:
    """A new, uniquely named file in ``path``'s folder, created as ``open()`` creates one: mode 0666 less
    the umask (0644 under the usual 022). mkstemp would make it 0600, being meant for secrets."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".vidprof-report-{secrets.token_hex(8)}.json")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:  # the name is taken (a crash's leftover, say): draw another
            continue


def write_json(path: str, doc: Mapping[str, Any]) -> None:
    """Write atomically: a reader never sees half a file, and a crash leaves the old one.

    The file's mode is what ``open(path, "w")`` would leave: an existing file keeps its own, a new one
    gets 0666 less the umask.

    A failure (a folder removed or a disk filled during the run) is a RunError naming the file, and the
    temporary file is removed: nothing half-written is left beside the target."""
    try:
        fd, tmp = _create_beside(path)
    except OSError as e:
        raise RunError(f"cannot write {path} ({e.strerror or e}); choose a writable path") from e
    try:
        with os.fdopen(fd, "w") as f:
            try:
                os.fchmod(f.fileno(), os.stat(path).st_mode & 0o777)
            except FileNotFoundError:
                pass
            json.dump(doc, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise RunError(f"cannot write {path} ({e.strerror or e}); choose a writable path") from e
        raise


def read_report(path: str) -> RunReport:
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError as e:
        raise RunError(f"report {path}: no such file; expected a JSON file written by {WRITTEN_BY}") from e
    except json.JSONDecodeError as e:
        raise RunError(f"report {path}: not valid JSON ({e.msg} at line {e.lineno}); "
                       f"expected a file written by {WRITTEN_BY}") from e
    return RunReport.from_json(doc, origin=path)
