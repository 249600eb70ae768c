"""``vidprof tune``: sweep run settings, measure each configuration end to end, and recommend one.

Each configuration is a ``RunConfig`` (the settings tune shares with run, with the grid's applied)
and runs as its own ``vidprof run`` subprocess, from ``RunConfig.to_argv()``, on the same frames: peak
memory is then that configuration's own (a process's peak RSS never goes down, so in-process runs would
inherit the largest one), a configuration that crashes cannot take the sweep with it, and what a user
reruns (the recommended command, from ``to_argv()`` too) is exactly what was measured. Repeats are
interleaved (A B C A B C) because these machines drift between minutes.

With ``paced`` (on by default when a latency budget is given), each configuration runs twice: as fast as
the source decodes, for its FPS, and paced like a camera (``--realtime``), for its latency. A file fed as
fast as it decodes builds a backlog, and its latency is then mostly queueing behind earlier frames: a
budget can only be met, or missed, by frames arriving at a real pace.
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

import numpy as np

from vidprof.pipeline.accuracy import AGREEMENT_FLOOR, IOU_MATCH, Outputs, compare, iou, load_outputs
from vidprof.pipeline.config import RunConfig, onnxruntime_conflict
from vidprof.pipeline.optimize import ModelChoices, row_columns
from vidprof.profiling.errors import RunError, UsageError, runtime_detail
from vidprof.profiling.report import RunReport, read_report

BOOL_KEYS = {"zero_copy", "sync"}
MAX_PACED_DROP = 0.01  # paced like a camera, a configuration that drops more than this cannot keep up
GRID_KEYS = ("hint", "streams", "nireq", "preprocess", "infer_precision", "zero_copy", "device", "sync", "batch",
             "model", "runtime")
# grid key -> the RunConfig field it sets ("inference.X": a field of its InferenceOptions), and how the
# grid's text becomes the field's value.
GRID_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "hint": ("inference.hint", str),
    "streams": ("inference.streams", int),
    "nireq": ("inference.nireq", int),
    "preprocess": ("preprocess", str),
    "infer_precision": ("inference.infer_precision", str),
    "zero_copy": ("inference.zero_copy", lambda v: v == "true"),
    "device": ("inference.device", str),
    "sync": ("inference.sync", lambda v: v == "true"),
    "batch": ("inference.batch", int),
    # model: original, int8 (resolved to paths by ``apply``'s ``models``) or a path; runtime: openvino, onnxruntime.
    "model": ("model", str),
    "runtime": ("runtime", str),
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


def runnable(grid: dict[str, list[str]], base: RunConfig, models: ModelChoices | None = None
             ) -> tuple[list[dict[str, str]], list[tuple[dict[str, str], str]]]:
    """The grid's configurations that can run, and those that cannot with why: when the grid varies the
    runtime, a combination ONNX Runtime cannot run (an INT8 IR, fused preprocessing, another device, ...) is
    skipped rather than failing the sweep; the user asked for the product, not for each combination."""
    ok: list[dict[str, str]] = []
    skipped: list[tuple[dict[str, str], str]] = []
    for settings in configurations(grid):
        if "runtime" in grid and settings["runtime"] == "onnxruntime":
            # Built with OpenVINO as the runtime, which takes anything (apply() would refuse it outright), then
            # asked what ONNX Runtime would refuse.
            why = onnxruntime_conflict(apply(base, {**settings, "runtime": "openvino"}, models))
            if why:
                skipped.append((settings, why))
                continue
        ok.append(settings)
    return ok, skipped


def apply(base: RunConfig, settings: Mapping[str, str], models: ModelChoices | None = None) -> RunConfig:
    """``base`` with the grid's ``settings`` on the fields they name; the result checks itself, so a bad
    value fails with run's own message (``--hint 'fastest': expected one of ...``). ``models``: the paths the
    model= names stand for (original: the sweep's --model; int8: its quantised variant)."""
    top: dict[str, Any] = {}
    inference: dict[str, Any] = {}
    for key, text in settings.items():
        name, convert = GRID_FIELDS[key]
        part, _, attr = name.rpartition(".")
        if key == "model":
            top["model"] = (models or ModelChoices({"original": base.model})).path(text)
            continue
        (inference if part == "inference" else top)[attr] = convert(text)
    if inference.get("sync") and "nireq" not in inference:
        # One request at a time: a --nireq the sweep shares cannot apply to a sync configuration (the
        # reference is one by default), so it is dropped there rather than refused.
        inference["nireq"] = None
    return replace(base, inference=replace(base.inference, **inference), **top)


def label(settings: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


def shown(settings: Mapping[str, str]) -> str:
    """``settings`` as the table and the progress show them: spaces between, so a narrow column wraps
    between settings, never inside one."""
    return " ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


DEVICE_KEYS = ("device", "hint", "streams", "infer_precision")  # the grid keys that reach the compile step


def preflight(base: RunConfig, configs: Sequence[tuple[Mapping[str, str], RunConfig]]) -> bool:
    """Check the sources and the model once, and compile each distinct device setting once, before the
    sweep: a bad value is an error now, with the right culprit, not N configurations later.

    ``configs``: each configuration's grid settings (to name the culprit) and its RunConfig. Returns whether
    every source is live (a camera or stream, paced by nature)."""
    import openvino as ov

    from vidprof.pipeline.build import VIRTUAL_DEVICES
    from vidprof.samples import assets
    from vidprof.stages.ort_inference import check_model as check_onnx_model
    from vidprof.stages.sources import open_source

    live = True
    for src in dict.fromkeys(base.sources or (None,)):
        opened = open_source(src or assets.sample_clip_path())
        live = live and opened.live
        opened.close()
    core = ov.Core()
    path = base.model or assets.sample_model_path()
    if not os.path.exists(path):
        raise RunError(f"model {path}: no such file; expected an OpenVINO IR, ONNX, TFLite or other model")
    try:
        core.read_model(path)
    except RuntimeError as e:
        raise RunError(f"cannot read model {path}: {runtime_detail(e)}") from e
    seen: set[tuple[str, str, str, tuple[tuple[str, str], ...]]] = set()
    devices = set(core.available_devices)
    for settings, cfg in configs:
        inf = cfg.inference
        compile_config = inf.compile_config()
        model = cfg.model or assets.sample_model_path()  # model=... in the grid: each variant is checked too
        key = (model, cfg.runtime, inf.device, tuple(sorted(compile_config.items())))
        if key in seen:
            continue
        seen.add(key)
        if cfg.runtime == "onnxruntime":
            check_onnx_model(model)  # the package is installed and loads the file
            continue
        varied = {k: v for k, v in settings.items() if k in DEVICE_KEYS}
        # The grid's value when the grid set one, else the option every configuration shares.
        culprit = f"--grid {label(varied)}" if varied else f"--device {inf.device} with {compile_config or 'defaults'}"
        device_culprit = f"--grid device={inf.device}" if "device" in settings else f"--device {inf.device}"
        base_device = inf.device.split(":")[0].split(".")[0]
        if base_device not in devices and base_device not in VIRTUAL_DEVICES:
            raise UsageError(f"{device_culprit}: not available here (available: {', '.join(sorted(devices))})")
        try:
            core.compile_model(model, inf.device, compile_config)
        except RuntimeError as e:
            what = "drop that value" if varied else "change them"
            raise UsageError(f"{culprit}: the device rejects it ({runtime_detail(e)}); {what}") from e
    return live


@dataclass
class Result:
    settings: dict[str, str]
    config: RunConfig  # what runs: the shared settings with ``settings`` applied
    reference: bool = False
    runs: list[RunReport] = field(default_factory=list)  # as fast as the source decodes: FPS and the rest
    paced_runs: list[RunReport] | None = None  # paced like a camera: latency (None: the sweep is not paced)
    error: str | None = None
    accuracy: dict[str, Any] | None = None
    outputs_path: str | None = None

    def _med(self, get: Callable[[RunReport], float | None], runs: Sequence[RunReport] | None = None) -> float | None:
        vals = [v for r in (self.runs if runs is None else runs) if (v := get(r)) is not None]
        return statistics.median(vals) if vals else None

    def _spread(self, get: Callable[[RunReport], float | None],
                runs: Sequence[RunReport] | None = None) -> list[float] | None:
        vals = [v for r in (self.runs if runs is None else runs) if (v := get(r)) is not None]
        return [min(vals), max(vals)] if vals else None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)

    def _paced(self) -> dict[str, Any] | None:
        if self.paced_runs is None:
            return None
        runs = self.paced_runs
        dropped = self._med(lambda r: r.frames.dropped / r.frames.read if r.frames.read else None, runs)
        frames = self._med(lambda r: r.frames.dropped, runs)
        # One frame is let off: on a short run it is several per cent, and a start-up hiccup more than a pace.
        keeps = dropped is not None and (dropped <= MAX_PACED_DROP or (frames or 0) <= 1)
        return {"fps": self._med(lambda r: r.fps, runs), "dropped_ratio": dropped, "keeps_pace": keeps,
                "e2e": {"p50": self._med(lambda r: r.e2e.p50, runs), "p99": self._med(lambda r: r.e2e.p99, runs)}}

    def to_dict(self) -> dict[str, Any]:
        last = self.runs[-1] if self.runs else None
        paced = self._paced()
        # The latency the recommendation judges: a paced frame's when the sweep paces, else the backlog's too.
        latency_runs = self.paced_runs if self.paced_runs else self.runs
        return {
            "config": self.settings,
            "reference": self.reference,
            "status": "ok" if self.ok else "failed",
            "error": self.error,
            "fps": self._med(lambda r: r.fps),
            "fps_spread": self._spread(lambda r: r.fps),
            "model_only_fps": self._med(lambda r: r.model_only_fps),
            "e2e": {"p50": self._med(lambda r: r.e2e.p50, latency_runs),
                    "p99": self._med(lambda r: r.e2e.p99, latency_runs),
                    "p99_spread": self._spread(lambda r: r.e2e.p99, latency_runs)},
            "paced": paced,
            "bottleneck": last.bottleneck.stage if last else None,
            "peak_rss_bytes": self._med(lambda r: r.memory.get("peak_rss_bytes")),
            "compile_seconds": self._med(lambda r: r.startup.get("compile")),
            "precision": (last.config.get("resolved") or {}).get("precision") if last else None,
            "repeats": len(self.runs),
            "accuracy": self.accuracy,
        }


def pareto(points: Sequence[tuple[float, ...] | None]) -> list[int]:
    """Indices of points (fps, p99[, agreement]) that no other point beats: at least as good on every figure
    (higher FPS, lower p99, higher agreement) and better on one."""
    def key(p: tuple[float, ...]) -> tuple[float, ...]:
        return (p[0], -p[1], *p[2:])  # every figure: higher is better

    front = []
    for i, p in enumerate(points):
        if p is None:
            continue
        kp = key(p)
        dominated = any(q is not None and all(a >= b for a, b in zip(key(q), kp, strict=True)) and key(q) != kp
                        for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def passed_over(r: Mapping[str, Any], max_latency: float | None) -> str | None:
    """Why a configuration cannot be recommended, or None when it can."""
    if r["status"] != "ok":
        return "failed"
    acc = r["accuracy"] or {}
    if acc.get("changes_results"):
        return f"changes results (agreement {acc.get('agreement', 0):.3f})"
    paced = r.get("paced")
    if paced and not paced["keeps_pace"]:
        return f"drops {paced['dropped_ratio'] or 0:.0%} of frames at the source's pace"
    if max_latency is not None and r["e2e"]["p99"] is not None and r["e2e"]["p99"] > max_latency:
        return f"p99 {r['e2e']['p99'] * 1e3:.1f} ms is over the {max_latency * 1e3:g} ms budget"
    return None


def recommend(results: Sequence[dict[str, Any]], max_latency: float | None) -> tuple[int | None, str]:
    """The highest FPS whose p99 meets the budget, among results that do not change results (and, when
    paced, keep the source's pace); the lowest p99 when none meets it. Returns (index, why), the why
    naming each faster configuration passed over and the reason."""
    ok = [i for i, r in enumerate(results) if r["status"] == "ok" and not (r["accuracy"] or {}).get("changes_results")
          and ((r.get("paced") or {}).get("keeps_pace", True))]
    if not ok:
        return None, "no configuration ran without changing results or dropping frames at the source's pace"
    if max_latency is not None:
        within = [i for i in ok if results[i]["e2e"]["p99"] <= max_latency]
        if within:
            best = max(within, key=lambda i: results[i]["fps"])
            why = f"highest FPS with p99 within {max_latency * 1e3:g} ms"
        else:
            best = min(ok, key=lambda i: results[i]["e2e"]["p99"])
            why = f"no configuration meets p99 <= {max_latency * 1e3:g} ms; this one has the lowest p99"
    else:
        best = max(ok, key=lambda i: results[i]["fps"])
        why = "highest FPS (no --max-latency-ms given)"
    faster = sorted((i for i, r in enumerate(results) if r["status"] == "ok" and i != best
                     and r["fps"] is not None and r["fps"] > results[best]["fps"]), key=lambda i: -results[i]["fps"])
    reasons = [f"#{i} {reason}" for i in faster if (reason := passed_over(results[i], max_latency))]
    if reasons:
        shown = reasons[:3] + ([f"{len(reasons) - 3} more"] if len(reasons) > 3 else [])
        why += "; faster but passed over: " + "; ".join(shown)
    return best, why


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
    paced: bool = False  # latency measured with frames paced like a camera (a second run per configuration)
    live_source: bool = False  # every source is a camera or stream: paced already, one run is enough
    models: ModelChoices | None = None  # what the grid's model= values stand for (INT8: quantised before the sweep)

    @property
    def two_runs(self) -> bool:
        return self.paced and not self.live_source

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise UsageError(f"--min-agreement {self.min_agreement}: expected a share between 0 and 1")
        if self.repeat < 1:
            raise UsageError(f"--repeat {self.repeat}: expected at least 1")
        if self.max_latency is not None and self.max_latency <= 0:
            raise UsageError("--max-latency-ms: expected a positive number of milliseconds")


def run_one(opts: TuneOptions, config: RunConfig, workdir: str, tag: str, keep_outputs: bool,
            timeout: float = 1800, model_only: bool = True) -> tuple[RunReport | None, str | None, str | None]:
    """Run one configuration as `vidprof run`; returns (report, outputs path, error)."""
    report = os.path.join(workdir, f"{tag}.json")
    outputs = os.path.join(workdir, f"{tag}.npz") if keep_outputs else None
    measured = replace(config, report=report, warmup=opts.warmup)
    # The port and the outputs file are not settings of the config (see RunConfig.to_argv): added here.
    cmd = [sys.executable, "-m", "vidprof.pipeline", "run", *measured.to_argv(), "--quiet", "--no-metrics",
           "--model-only-seconds", repr(opts.model_only_seconds if model_only else 0.0)]
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


def unpaced(config: RunConfig) -> RunConfig:
    """``config`` fed as fast as its source decodes: what its FPS is measured on."""
    return replace(config, realtime=False, realtime_fps=None)


def paced(config: RunConfig) -> RunConfig:
    """``config`` paced like a camera (at --realtime-fps when given): what its latency is measured on."""
    return replace(config, realtime=True)


def sweep(opts: TuneOptions, on_step: Callable[[str, bool], None] | None = None) -> dict[str, Any]:
    """Run the reference, then every configuration ``opts.repeat`` times, interleaved.

    ``on_step(what, finished)``: called with ``finished=False`` as each run starts (``what`` names it as the
    table will: ``#index settings``) and with ``finished=True`` when it ends."""
    results = [Result(c, apply(opts.base, c, opts.models)) for c in runnable(opts.grid, opts.base, opts.models)[0]]
    ref = Result(dict(opts.reference), apply(opts.base, opts.reference, opts.models), reference=True)
    everything = [*results, ref]
    if opts.paced:
        for res in everything:
            res.paced_runs = [] if opts.two_runs else res.runs  # live sources: the one run is paced already

    def step(what: str, finished: bool) -> None:
        if on_step:
            on_step(what, finished)

    def measure(i: int, res: Result, k: int, keep_outputs: bool) -> tuple[RunReport | None, str | None, str | None]:
        """One measurement of ``res``: (its report, its outputs file, an error)."""
        name = f"{'reference' if res.reference else f'#{i}'} {shown(res.settings)}"
        again = f", repeat {k + 1}/{opts.repeat}" if opts.repeat > 1 and not res.reference else ""
        step(f"{name}{again}" + (", FPS run" if opts.two_runs else ""), False)
        config = unpaced(res.config) if opts.two_runs else res.config
        rep, out, err = run_one(opts, config, work, f"c{i}_r{k}", keep_outputs=keep_outputs)
        step(name, True)
        if rep is None:
            if opts.two_runs:
                step(name, True)  # the paced run it would have had: the progress still reaches its end
            return None, None, err
        res.runs.append(rep)
        if opts.two_runs and res.paced_runs is not None:
            step(f"{name}{again}, paced run", False)
            rep_p, _, err_p = run_one(opts, paced(res.config), work, f"c{i}_r{k}_paced", keep_outputs=False,
                                      model_only=False)
            step(name, True)
            if rep_p is None:
                return None, None, f"paced like a camera: {err_p}"
            res.paced_runs.append(rep_p)
        return rep, out, None

    with tempfile.TemporaryDirectory(prefix="vidprof-tune-") as work:
        # The reference first: every configuration is compared with its outputs.
        rep, ref.outputs_path, ref.error = measure(len(results), ref, 0, keep_outputs=True)
        if rep is None:
            raise RunError(f"the reference configuration ({label(ref.settings)}) failed: {ref.error}; "
                           "choose another with --reference")
        decoder = rep.config.get("postprocess_decoder", "passthrough")
        threshold = (rep.config.get("postprocess") or {}).get("threshold")
        ref_outputs = load_outputs(ref.outputs_path)  # type: ignore[arg-type]
        for k in range(opts.repeat):
            for i, res in enumerate(results):  # interleaved: A B C A B C
                if res.error is not None:
                    step(f"#{i} {shown(res.settings)} (failed before; skipped)", True)
                    if opts.two_runs:
                        step("", True)
                    continue
                first = k == 0
                rep, out, err = measure(i, res, k, keep_outputs=first)
                if rep is None:
                    res.error = err
                elif out:
                    # An INT8 variant is judged on frames its calibration did not see.
                    unseen = (opts.models.seen.get(res.settings.get("model", ""), frozenset()) if opts.models
                              else frozenset())
                    res.accuracy = agreement(ref_outputs, load_outputs(out), decoder, opts.min_agreement, threshold,
                                             unseen)
                    os.unlink(out)
        ref.accuracy = agreement(ref_outputs, ref_outputs, decoder, opts.min_agreement, threshold)
    rows = [r.to_dict() for r in everything]
    for row, res in zip(rows, everything, strict=True):  # which model, on which runtime, its size and cost
        row.update(row_columns(res.settings, res.config, res.runs[-1].config.get("resolved") if res.runs else None,
                               opts.models))
    # FPS, p99 and agreement: an INT8 variant faster and quicker than the original but less accurate is not
    # beaten by it, and the front shows the trade.
    points = [(r["fps"], r["e2e"]["p99"], (r["accuracy"] or {}).get("agreement", 1.0)) if r["status"] == "ok"
              else None for r in rows]
    best, why = recommend(rows, opts.max_latency)
    recommended = everything[best].config if best is not None else None
    return {
        "vidprof_tune": 1,
        "grid": opts.grid,
        "base_args": opts.base.to_argv(),
        "max_latency_seconds": opts.max_latency,
        "repeat": opts.repeat,
        # How latency was measured: "paced" (frames arriving like a camera's) or "unpaced" (as fast as the
        # source decodes, so e2e includes the backlog); FPS is always as fast as the source decodes.
        "latency": "paced" if opts.paced else "unpaced",
        "pace_fps": opts.base.realtime_fps,  # None: the source's own FPS
        "results": rows,
        "pareto": pareto(points),
        "recommended": best,
        "recommended_why": why,
        # What the recommendation was judged on: paced when the sweep paced latency.
        "recommended_command": command_line(paced(recommended) if opts.paced else recommended)
        if recommended is not None else None,
        "reference": len(rows) - 1,
        "skipped": [{"config": s, "why": why} for s, why in runnable(opts.grid, opts.base, opts.models)[1]],
        "models": {name: v.to_dict() for name, v in opts.models.variants.items()} if opts.models else {},
    }


# A box whose score is this close to the --threshold flips under any rounding (another resize, another
# precision): a random-weights detector has many such boxes, a trained one few. Unmatched, it is left out
# of the agreement; a box scoring further from the threshold still has to match.
BORDERLINE = 0.02


def _matched_rows(ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of each side the one-to-one matching pairs up (the same greedy matching as
    ``accuracy.matched_boxes``: most confident reference boxes first, IoU >= 0.5, same label)."""
    used_r, used_c = np.zeros(len(ref), bool), np.zeros(len(cand), bool)
    if len(ref) == 0 or len(cand) == 0:
        return used_r, used_c
    overlap = iou(ref[:, :4], cand[:, :4])
    overlap[ref[:, None, 5] != cand[None, :, 5]] = 0.0
    for i in np.argsort(-ref[:, 4]):
        row = np.where(used_c, 0.0, overlap[i])
        j = int(np.argmax(row))
        if row[j] >= IOU_MATCH:
            used_r[i] = used_c[j] = True
    return used_r, used_c


def _overlapped(boxes: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Which of ``boxes`` overlap a box of the same label in ``other`` at IoU >= 0.5, matched or not."""
    if len(boxes) == 0 or len(other) == 0:
        return np.zeros(len(boxes), bool)
    overlap = iou(boxes[:, :4], other[:, :4])
    overlap[boxes[:, None, 5] != other[None, :, 5]] = 0.0
    return overlap.max(axis=1) >= IOU_MATCH


def without_unstable(ref: Outputs, cand: Outputs, threshold: float, margin: float = BORDERLINE
                     ) -> tuple[Outputs, Outputs, int]:
    """Both sides' decoded boxes less the unmatched ones that only rounding moved: those scoring within
    ``margin`` of ``threshold`` (they flip), and those overlapping a box of the same label in the other run
    (the same object, NMS having kept another of its candidate boxes once the scores moved a little). The
    raw outputs are kept as they are. Returns (ref, cand, boxes left out)."""
    out_r: Outputs = {}
    out_c: Outputs = dict(cand)
    left_out = 0
    for i, (r_raw, r_res) in ref.items():
        out_r[i] = (r_raw, r_res)
        if i not in cand or r_res is None or cand[i][1] is None:
            continue
        c_raw, c_res = cand[i]
        assert c_res is not None
        used_r, used_c = _matched_rows(r_res, c_res)
        keep_r = used_r | ((r_res[:, 4] >= threshold + margin) & ~_overlapped(r_res, c_res))
        keep_c = used_c | ((c_res[:, 4] >= threshold + margin) & ~_overlapped(c_res, r_res))
        left_out += int((~keep_r).sum() + (~keep_c).sum())
        out_r[i] = (r_raw, r_res[keep_r])
        out_c[i] = (c_raw, c_res[keep_c])
    return out_r, out_c, left_out


def agreement(ref: Outputs, cand: Outputs, decoder: str, floor: float, threshold: float | None,
              exclude: frozenset[int] = frozenset()) -> dict[str, Any]:
    """``accuracy.compare``, less the detections that only rounding moved (see ``without_unstable``).

    ``agreement`` is then what decides ``changes_results``; ``strict_agreement`` counts every box. ``exclude``:
    frames left out (those an INT8 variant was calibrated on)."""
    strict = compare(ref, cand, decoder, floor, exclude, 0.5 if threshold is None else threshold)
    if decoder not in ("detection", "ssd") or threshold is None:
        return strict
    r, c, left_out = without_unstable(ref, cand, threshold)
    tolerant = compare(r, c, decoder, floor, exclude)
    return {**tolerant, "max_abs_diff": strict["max_abs_diff"], "strict_agreement": strict["agreement"],
            "unstable_left_out": left_out,
            "method": f"{strict['method']}; unmatched boxes left out when within {BORDERLINE:g} of the score "
                      f"threshold ({threshold:g}) or overlapping a box of the same label"}


def command_line(config: RunConfig) -> str:
    """The command that reruns a configuration as measured, less tune's measuring aids (its warm-up
    rounds, its report file): what a user would run."""
    return shlex.join(["vidprof", "run", *config.to_argv()])


def write_csv(path: str, doc: dict[str, Any]) -> None:
    keys = sorted({k for r in doc["results"] for k in r["config"]})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", *keys, "reference", "status", "fps", "model_only_fps", "e2e_p50_seconds",
                    "e2e_p99_seconds", "latency", "paced_dropped_ratio", "bottleneck", "peak_rss_bytes",
                    "compile_seconds", "precision",
                    "model_size_bytes", "quantize_seconds", "agreement", "max_abs_diff", "pareto", "recommended",
                    "error"])
        for i, r in enumerate(doc["results"]):
            acc = r["accuracy"] or {}
            paced = r.get("paced") or {}
            w.writerow([i, *(r["config"].get(k, "") for k in keys), r["reference"], r["status"], r["fps"],
                        r["model_only_fps"], r["e2e"]["p50"], r["e2e"]["p99"], doc.get("latency", "unpaced"),
                        paced.get("dropped_ratio", ""), r["bottleneck"], r["peak_rss_bytes"],
                        r["compile_seconds"], r["precision"], r.get("model_size_bytes"), r.get("quantize_seconds"),
                        acc.get("agreement"), acc.get("max_abs_diff"),
                        i in doc["pareto"], i == doc["recommended"], r["error"] or ""])
