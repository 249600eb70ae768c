"""``vidprof tune``: sweep run settings, measure each configuration end to end, and recommend one.

Each configuration is a ``RunConfig`` (the settings tune shares with run, with the grid's applied)
and runs as its own ``vidprof run`` subprocess, from ``RunConfig.to_argv()``, on the same frames: peak
memory is then that configuration's own (a process's peak RSS never goes down, so in-process runs would
inherit the largest one), a configuration that crashes cannot take the sweep with it, and what a user
reruns (the recommended command, from ``to_argv()`` too) is exactly what was measured. Repeats are
interleaved (A B C A B C) because these machines drift between minutes.
"""

from __future__ import annotations

import csv
import itertools
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vidprof.pipeline.accuracy import AGREEMENT_FLOOR, compare, load_outputs
from vidprof.pipeline.config import RunConfig
from vidprof.profiling.errors import RunError, UsageError, runtime_detail
from vidprof.profiling.report import RunReport, read_report

BOOL_KEYS = {"zero_copy", "sync"}
GRID_KEYS = ("hint", "streams", "nireq", "preprocess", "infer_precision", "zero_copy", "device", "sync", "batch")
# grid key -> the RunConfig field it sets ("inference.X": a field of its InferenceOptions), and how the
# grid's text becomes the field's value. batch has none: only 1 is accepted, which is what vidprof does.
GRID_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "hint": ("inference.hint", str),
    "streams": ("inference.streams", int),
    "nireq": ("inference.nireq", int),
    "preprocess": ("preprocess", str),
    "infer_precision": ("inference.infer_precision", str),
    "zero_copy": ("inference.zero_copy", lambda v: v == "true"),
    "device": ("inference.device", str),
    "sync": ("inference.sync", lambda v: v == "true"),
}
_ALIASES = {"infer-precision": "infer_precision", "precision": "infer_precision", "zero-copy": "zero_copy"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _key(raw: str) -> str:
    key = _ALIASES.get(raw.strip(), raw.strip())
    if key not in GRID_KEYS:
        raise UsageError(f"--grid {raw}=...: unknown key; expected one of {', '.join(GRID_KEYS)}")
    return key


def _value(key: str, raw: str) -> str:
    v = raw.strip()
    if key in BOOL_KEYS:
        if v.lower() not in _TRUE | _FALSE:
            raise UsageError(f"--grid {key}={v}: expected true or false")
        return "true" if v.lower() in _TRUE else "false"
    if key in ("streams", "nireq", "batch"):
        if not v.isdigit() or int(v) < 1:
            raise UsageError(f"--grid {key}={v}: expected a positive whole number")
        if key == "batch" and v != "1":
            raise UsageError(f"--grid batch={v}: vidprof feeds one frame per request (batch 1); "
                             "batched inference is not supported yet")
    if not v:
        raise UsageError(f"--grid {key}: empty value; expected KEY=V1,V2,...")
    return v


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. nireq=1,2,4")
        raw_key, raw_values = item.split("=", 1)
        key = _key(raw_key)
        if key in grid:
            raise UsageError(f"--grid {key} is given twice; put all its values in one --grid {key}=V1,V2")
        values = [_value(key, v) for v in raw_values.split(",") if v.strip()]
        if not values:
            raise UsageError(f"--grid {item!r}: no values, so the sweep would be empty; expected {key}=V1,V2,...")
        grid[key] = list(dict.fromkeys(values))
    return grid


def parse_settings(text: str) -> dict[str, str]:
    """``KEY=V,KEY=V`` (one value each), as --reference takes it."""
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise UsageError(f"--reference {text!r}: expected KEY=VALUE,KEY=VALUE, e.g. infer_precision=f32,sync=true")
        k, v = part.split("=", 1)
        key = _key(k)
        out[key] = _value(key, v)
    return out


def configurations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def apply(base: RunConfig, settings: Mapping[str, str]) -> RunConfig:
    """``base`` with the grid's ``settings`` on the fields they name; the result checks itself, so a bad
    value fails with run's own message (``--hint 'fastest': expected one of ...``)."""
    top: dict[str, Any] = {}
    inference: dict[str, Any] = {}
    for key, text in settings.items():
        if key not in GRID_FIELDS:
            continue  # batch
        name, convert = GRID_FIELDS[key]
        part, _, attr = name.rpartition(".")
        (inference if part == "inference" else top)[attr] = convert(text)
    return replace(base, inference=replace(base.inference, **inference), **top)


def label(settings: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


DEVICE_KEYS = ("device", "hint", "streams", "infer_precision")  # the grid keys that reach the compile step


def preflight(base: RunConfig, configs: Sequence[tuple[Mapping[str, str], RunConfig]]) -> None:
    """Check the sources and the model once, and compile each distinct device setting once, before the
    sweep: a bad value is an error now, with the right culprit, not N configurations later.

    ``configs``: each configuration's grid settings (to name the culprit) and its RunConfig."""
    import openvino as ov

    from vidprof.pipeline.build import VIRTUAL_DEVICES
    from vidprof.samples import assets
    from vidprof.stages.sources import open_source

    for src in dict.fromkeys(base.sources or (None,)):
        open_source(src or assets.sample_clip_path()).close()
    core = ov.Core()
    path = base.model or assets.sample_model_path()
    if not os.path.exists(path):
        raise RunError(f"model {path}: no such file; expected an OpenVINO IR, ONNX, TFLite or other model")
    try:
        core.read_model(path)
    except RuntimeError as e:
        raise RunError(f"cannot read model {path}: {runtime_detail(e)}") from e
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    devices = set(core.available_devices)
    for settings, cfg in configs:
        inf = cfg.inference
        compile_config = inf.compile_config()
        key = (inf.device, tuple(sorted(compile_config.items())))
        if key in seen:
            continue
        seen.add(key)
        varied = {k: v for k, v in settings.items() if k in DEVICE_KEYS}
        # The grid's value when the grid set one, else the option every configuration shares.
        culprit = f"--grid {label(varied)}" if varied else f"--device {inf.device} with {compile_config or 'defaults'}"
        device_culprit = f"--grid device={inf.device}" if "device" in settings else f"--device {inf.device}"
        base_device = inf.device.split(":")[0].split(".")[0]
        if base_device not in devices and base_device not in VIRTUAL_DEVICES:
            raise UsageError(f"{device_culprit}: not available here (available: {', '.join(sorted(devices))})")
        try:
            core.compile_model(path, inf.device, compile_config)
        except RuntimeError as e:
            what = "drop that value" if varied else "change them"
            raise UsageError(f"{culprit}: the device rejects it ({runtime_detail(e)}); {what}") from e


@dataclass
class Result:
    settings: dict[str, str]
    config: RunConfig  # what runs: the shared settings with ``settings`` applied
    reference: bool = False
    runs: list[RunReport] = field(default_factory=list)
    error: str | None = None
    accuracy: dict[str, Any] | None = None
    outputs_path: str | None = None

    def _med(self, get: Callable[[RunReport], float | None]) -> float | None:
        vals = [v for r in self.runs if (v := get(r)) is not None]
        return statistics.median(vals) if vals else None

    def _spread(self, get: Callable[[RunReport], float | None]) -> list[float] | None:
        vals = [v for r in self.runs if (v := get(r)) is not None]
        return [min(vals), max(vals)] if vals else None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)

    def to_dict(self) -> dict[str, Any]:
        last = self.runs[-1] if self.runs else None
        return {
            "config": self.settings,
            "reference": self.reference,
            "status": "ok" if self.ok else "failed",
            "error": self.error,
            "fps": self._med(lambda r: r.fps),
            "fps_spread": self._spread(lambda r: r.fps),
            "model_only_fps": self._med(lambda r: r.model_only_fps),
            "e2e": {"p50": self._med(lambda r: r.e2e.p50), "p99": self._med(lambda r: r.e2e.p99),
                    "p99_spread": self._spread(lambda r: r.e2e.p99)},
            "bottleneck": last.bottleneck.stage if last else None,
            "peak_rss_bytes": self._med(lambda r: r.memory.get("peak_rss_bytes")),
            "compile_seconds": self._med(lambda r: r.startup.get("compile")),
            "precision": (last.config.get("resolved") or {}).get("precision") if last else None,
            "repeats": len(self.runs),
            "accuracy": self.accuracy,
        }


def pareto(points: Sequence[tuple[float, float] | None]) -> list[int]:
    """Indices of points (fps, p99) that no other point beats on both (higher FPS, lower p99)."""
    front = []
    for i, p in enumerate(points):
        if p is None:
            continue
        dominated = any(q is not None and q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1])
                        for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def recommend(results: Sequence[dict[str, Any]], max_latency: float | None) -> tuple[int | None, str]:
    """The highest FPS whose p99 meets the budget, among results that do not change results; the lowest
    p99 when none meets it. Returns (index, why)."""
    ok = [i for i, r in enumerate(results) if r["status"] == "ok" and not (r["accuracy"] or {}).get("changes_results")]
    if not ok:
        return None, "no configuration ran without changing results"
    if max_latency is not None:
        within = [i for i in ok if results[i]["e2e"]["p99"] <= max_latency]
        if within:
            best = max(within, key=lambda i: results[i]["fps"])
            return best, f"highest FPS with p99 within {max_latency * 1e3:g} ms"
        best = min(ok, key=lambda i: results[i]["e2e"]["p99"])
        return best, f"no configuration meets p99 <= {max_latency * 1e3:g} ms; this one has the lowest p99"
    return max(ok, key=lambda i: results[i]["fps"]), "highest FPS (no --max-latency-ms given)"


@dataclass(frozen=True)
class TuneOptions:
    grid: dict[str, list[str]]
    base: RunConfig  # what every configuration shares (source, model, frames, ...); the grid overrides its keys
    reference: dict[str, str]
    repeat: int = 1
    warmup: int = 5
    model_only_seconds: float = 2.0
    max_latency: float | None = None  # seconds
    min_agreement: float = AGREEMENT_FLOOR

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError(f"--min-agreement {self.min_agreement}: expected a share between 0 and 1")
        if self.repeat < 1:
            raise UsageError(f"--repeat {self.repeat}: expected at least 1")
        if self.max_latency is not None and self.max_latency <= 0:
            raise UsageError("--max-latency-ms: expected a positive number of milliseconds")


def run_one(opts: TuneOptions, config: RunConfig, workdir: str, tag: str, keep_outputs: bool,
            timeout: float = 1800) -> tuple[RunReport | None, str | None, str | None]:
    """Run one configuration as `vidprof run`; returns (report, outputs path, error)."""
    report = os.path.join(workdir, f"{tag}.json")
    outputs = os.path.join(workdir, f"{tag}.npz") if keep_outputs else None
    measured = replace(config, report=report, warmup=opts.warmup)
    # The port and the outputs file are not settings of the config (see RunConfig.to_argv): added here.
    cmd = [sys.executable, "-m", "vidprof.pipeline", "run", *measured.to_argv(), "--quiet", "--no-metrics",
           "--model-only-seconds", repr(opts.model_only_seconds)]
    if outputs:
        cmd += ["--dump-outputs", outputs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, None, f"timed out after {timeout:g} s"
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("vidprof: error:")]
    if proc.returncode != 0 or not os.path.exists(report):
        why = errors[-1].removeprefix("vidprof: error: ") if errors else (proc.stderr.strip().splitlines() or
                                                                          [f"exit code {proc.returncode}"])[-1]
        return None, None, why
    try:
        return read_report(report), outputs, None
    except RunError as e:  # a run that wrote a report this version cannot read: that configuration failed
        return None, None, str(e)


def sweep(opts: TuneOptions, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    results = [Result(c, apply(opts.base, c)) for c in configurations(opts.grid)]
    ref = Result(dict(opts.reference), apply(opts.base, opts.reference), reference=True)
    with tempfile.TemporaryDirectory(prefix="vidprof-tune-") as work:
        # The reference first: every configuration is compared with its outputs.
        rep, ref.outputs_path, ref.error = run_one(opts, ref.config, work, "ref", keep_outputs=True)
        if on_step:
            on_step("reference " + label(ref.settings))
        if rep is None:
            raise RunError(f"the reference configuration ({label(ref.settings)}) failed: {ref.error}; "
                           "choose another with --reference")
        ref.runs.append(rep)
        decoder = rep.config.get("postprocess_decoder", "passthrough")
        ref_outputs = load_outputs(ref.outputs_path)  # type: ignore[arg-type]
        for k in range(opts.repeat):
            for i, res in enumerate(results):  # interleaved: A B C A B C
                if res.error is not None:
                    if on_step:
                        on_step(f"skip (failed) {label(res.settings)}")
                    continue
                first = k == 0
                rep, out, err = run_one(opts, res.config, work, f"c{i}_r{k}", keep_outputs=first)
                if rep is None:
                    res.error = err
                else:
                    res.runs.append(rep)
                    if out:
                        res.accuracy = compare(ref_outputs, load_outputs(out), decoder, opts.min_agreement)
                        os.unlink(out)
                if on_step:
                    on_step(label(res.settings))
        ref.accuracy = compare(ref_outputs, ref_outputs, decoder)
    everything = [*results, ref]
    rows = [r.to_dict() for r in everything]
    points = [(r["fps"], r["e2e"]["p99"]) if r["status"] == "ok" else None for r in rows]
    best, why = recommend(rows, opts.max_latency)
    return {
        "vidprof_tune": 1,
        "grid": opts.grid,
        "base_args": opts.base.to_argv(),
        "max_latency_seconds": opts.max_latency,
        "repeat": opts.repeat,
        "results": rows,
        "pareto": pareto(points),
        "recommended": best,
        "recommended_why": why,
        "recommended_command": command_line(everything[best].config) if best is not None else None,
        "reference": len(rows) - 1,
    }


def command_line(config: RunConfig) -> str:
    """The command that reruns a configuration as measured, less tune's measuring aids (its warm-up
    rounds, its report file): what a user would run."""
    return shlex.join(["vidprof", "run", *config.to_argv()])


def write_csv(path: str, doc: dict[str, Any]) -> None:
    keys = sorted({k for r in doc["results"] for k in r["config"]})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", *keys, "reference", "status", "fps", "model_only_fps", "e2e_p50_seconds",
                    "e2e_p99_seconds", "bottleneck", "peak_rss_bytes", "compile_seconds", "precision",
                    "agreement", "max_abs_diff", "pareto", "recommended", "error"])
        for i, r in enumerate(doc["results"]):
            acc = r["accuracy"] or {}
            w.writerow([i, *(r["config"].get(k, "") for k in keys), r["reference"], r["status"], r["fps"],
                        r["model_only_fps"], r["e2e"]["p50"], r["e2e"]["p99"], r["bottleneck"], r["peak_rss_bytes"],
                        r["compile_seconds"], r["precision"], acc.get("agreement"), acc.get("max_abs_diff"),
                        i in doc["pareto"], i == doc["recommended"], r["error"] or ""])
