"""Model-level optimisation in the loop: INT8 post-training quantisation calibrated on the user's own frames.

    frames drawn evenly from the source ─▶ the run's own preprocessing ─▶ nncf.quantize ─▶ INT8 IR (cached)

``vidprof tune --grid model=original,int8`` measures the INT8 variant beside the original, end to end and
on accuracy against it (on frames calibration did not see); ``vidprof optimize`` writes it on its own.

Why calibrate on the user's frames, through the run's preprocessing: post-training quantisation picks each
activation's range from the calibration inputs, so inputs that differ from what the model will see at run
time (other scenes, another resize or normalisation) give ranges that fit other data. Calibration frames
are drawn evenly over the whole source, not its first seconds, so a scene that changes is covered.

The quantised IR is cached in vidprof's cache folder (``$XDG_CACHE_HOME/vidprof/int8/KEY/``), keyed by the
model's bytes, the sources (path, size and time of change of a file), the frame sizes, the preprocessing,
the calibration settings and the NNCF and OpenVINO versions: a second sweep on the same inputs reuses it.
NNCF pulls scipy and scikit-learn, so it is the optional extra ``vidprof[optimize]``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.optimize_args import DEFAULT_CALIBRATION_FRAMES, PRESETS
from vidprof.profiling.errors import RunError, UsageError, VidprofError, runtime_detail
from vidprof.samples import assets
from vidprof.stages import sources
from vidprof.stages.frame import Frame

EXTRA = "optimize"  # the pip extra that installs NNCF: vidprof[optimize]
NAMED_MODELS = ("original", "int8")  # the model= values of a grid that are not paths
# Bump when what goes into a quantised model changes (calibration, quantisation or saving), so older cache
# entries are not reused.
CACHE_FORMAT = 1
META = "variant.json"


def _missing(what: str) -> UsageError:
    return UsageError(f"INT8 quantisation needs NNCF, which is not installed ({what} is missing); install it "
                      f"with `pip install 'vidprof[{EXTRA}]'`")


def import_nncf() -> Any:
    try:
        import nncf
    except ImportError as e:
        raise _missing(e.name or "nncf") from e
    return nncf


def nncf_version() -> str:
    """NNCF's version without importing it (seconds, and scipy's thread pools): a cache hit needs no NNCF."""
    from importlib import metadata

    try:
        return metadata.version("nncf")
    except metadata.PackageNotFoundError as e:
        raise _missing("nncf") from e


@dataclass(frozen=True)
class QuantizeSettings:
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES
    preset: str = "performance"
    fast_bias_correction: bool = True  # NNCF's default: the bias correction that costs seconds, not minutes

    def __post_init__(self) -> None:
        if self.calibration_frames < 1:
            raise UsageError(f"--calibration-frames {self.calibration_frames}: expected at least 1 frame "
                             f"(default {DEFAULT_CALIBRATION_FRAMES})")
        if self.preset not in PRESETS:
            raise UsageError(f"--preset {self.preset!r}: expected one of {', '.join(PRESETS)}")


@dataclass(frozen=True)
class CalibrationPick:
    """The frames of one source that calibration used."""

    source: str
    indices: tuple[int, ...]  # frame numbers in the source, from 0, in the order a run reads them
    total: int | None  # frames in the source; None: a camera, a stream or a synthetic pattern (no end)
    replayable: bool  # a run reads these very frames at these indices (a file, images, a synthetic pattern)

    def run_frames(self, frames: int | None, loop: bool) -> int | None:
        """How many frames a run of this source reads with ``--frames`` and ``--loop``; None: unbounded."""
        if frames is None:
            return None if loop or self.total is None else self.total
        return frames if loop or self.total is None else min(frames, self.total)

    def seen(self, frames: int | None, loop: bool) -> frozenset[int]:
        """The frame indices of such a run that calibration saw (a looped file sees them again each turn)."""
        if not self.replayable:
            return frozenset()  # a live source: the run captures frames calibration never had
        chosen = set(self.indices)
        n = self.run_frames(frames, loop)
        if n is None:
            return frozenset(chosen)
        if loop and self.total:
            return frozenset(i for i in range(n) if i % self.total in chosen)
        return frozenset(i for i in chosen if i < n)


@dataclass(frozen=True)
class Variant:
    """A quantised model and what it cost."""

    name: str
    path: str  # the INT8 IR (.xml, its .bin beside it)
    source_model: str
    size_bytes: int
    source_size_bytes: int
    quantize_seconds: float  # nncf.quantize alone, when the variant was made
    read_seconds: float  # reading and keeping the calibration frames
    settings: QuantizeSettings
    calibration: tuple[CalibrationPick, ...]
    versions: Mapping[str, str]
    cached: bool = False  # found in the cache: made by an earlier run, not now

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["calibration"] = [{**asdict(p), "indices": list(p.indices)} for p in self.calibration]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str, cached: bool) -> Variant:
        picks = tuple(CalibrationPick(p["source"], tuple(p["indices"]), p["total"], p["replayable"])
                      for p in d["calibration"])
        return cls(d["name"], path, d["source_model"], model_size_bytes(path), d["source_size_bytes"],
                   d["quantize_seconds"], d["read_seconds"], QuantizeSettings(**d["settings"]), picks,
                   dict(d["versions"]), cached)


def model_size_bytes(path: str) -> int:
    """Bytes on disk: an IR's .xml and .bin, an ONNX file and its external data files, a folder's files."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    total = os.path.getsize(path)
    stem, ext = os.path.splitext(path)
    if ext.lower() == ".xml" and os.path.exists(stem + ".bin"):
        total += os.path.getsize(stem + ".bin")
    elif ext.lower() == ".onnx":
        # External tensors sit beside the model as *.data or *.onnx_data (the exporter's names).
        total += sum(os.path.getsize(f) for f in glob.glob(glob.escape(stem) + "*.*data"))
    return total


def cache_root() -> str:
    """``$XDG_CACHE_HOME/vidprof/int8``: beside the embedded samples, in vidprof's own cache folder."""
    return os.path.join(os.path.dirname(assets.cache_dir()), "int8")


def _digest_files(paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _model_files(path: str) -> list[str]:
    stem, ext = os.path.splitext(path)
    if ext.lower() == ".xml" and os.path.exists(stem + ".bin"):
        return [path, stem + ".bin"]
    if os.path.isdir(path):
        return sorted(os.path.join(root, f) for root, _, files in os.walk(path) for f in files)
    return [path]


def _source_identity(spec: str) -> Any:
    """What names a source's content cheaply: a file by path, size and time of change (hashing a long video
    would cost more than quantising); an image folder by its files' the same way; others by their spec."""
    kind = sources.find_kind(spec)
    if kind.name == "file":
        st = os.stat(spec)
        return ["file", os.path.realpath(spec), st.st_size, st.st_mtime_ns]
    if kind.name == "images":
        pattern = os.path.join(spec, "*") if os.path.isdir(spec) else spec
        files = sorted(glob.glob(pattern))
        return ["images", os.path.realpath(spec), [(os.path.basename(f), os.path.getsize(f),
                                                    os.stat(f).st_mtime_ns) for f in files]]
    return [kind.name, spec]


def cache_key(model_path: str, specs: Sequence[str], sizes: Sequence[tuple[int, int]], config: RunConfig,
              settings: QuantizeSettings, versions: Mapping[str, str]) -> str:
    pre = config.preprocess_options
    parts = {
        "format": CACHE_FORMAT,
        "model": _digest_files(_model_files(model_path)),
        "sources": [_source_identity(s) for s in specs],
        "sizes": [list(s) for s in sizes],
        # separate and fused run the very same PrePostProcessor steps; host is OpenCV's resize.
        "preprocess": "host" if config.preprocess == "host" else "openvino",
        "model_color": pre.model_color, "mean": pre.mean, "scale": pre.scale,
        "settings": asdict(settings),
        "versions": dict(versions),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def evenly(total: int, count: int) -> tuple[int, ...]:
    """``count`` distinct frame indices spread over ``total`` frames: the middle of each of ``count`` equal
    stretches (``total >= count``)."""
    return tuple((2 * k + 1) * total // (2 * count) for k in range(count))


def shares(count: int, parts: int) -> list[int]:
    """``count`` calibration frames split between ``parts`` sources, as evenly as whole frames allow."""
    return [count // parts + (1 if k < count % parts else 0) for k in range(parts)]


def _too_few(spec: str, have: int, want: int, asked: int, parts: int) -> RunError:
    of = f"the {want} of the {asked} asked for that fall to it ({parts} sources)" if parts > 1 else f"the {want}"
    return RunError(f"--calibration-frames {asked}: source {spec} has {have} frames, fewer than {of}; give a "
                    f"longer source, or --calibration-frames {have * parts if parts > 1 else have} or fewer")


def _declared_frames(spec: str) -> int | None:
    """A file's frame count as its container declares it (may be off, or 0: then counted by reading)."""
    import cv2

    cap = cv2.VideoCapture(spec)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n if n > 0 else None


def _read_indices(spec: str, options: sources.SourceOptions, wanted: Sequence[int],
                  keep: Callable[[int, np.ndarray], None]) -> int:
    """Read the source from its start, handing ``keep`` the frames at ``wanted``; returns the frames read
    (stops after the last wanted one)."""
    want = set(wanted)
    last = max(wanted)
    src = sources.open_source(spec, options=options)
    try:
        i = 0
        while i <= last:
            img = src.read()
            if img is None:
                break
            if i in want:
                keep(i, img)
            i += 1
        return i
    finally:
        src.close()


def _count_frames(spec: str, options: sources.SourceOptions) -> int:
    src = sources.open_source(spec, options=options)
    try:
        n = 0
        while src.read() is not None:
            n += 1
        return n
    finally:
        src.close()


class _Kept:
    """Counts the frames handed on to ``keep``."""

    def __init__(self, keep: Callable[[int, np.ndarray], None]) -> None:
        self._keep = keep
        self.count = 0

    def __call__(self, i: int, img: np.ndarray) -> None:
        self.count += 1
        self._keep(i, img)


def pick_frames(spec: str, count: int, options: sources.SourceOptions, keep: Callable[[int, np.ndarray], None],
                asked: int | None = None, parts: int = 1) -> CalibrationPick:
    """Hand ``keep`` ``count`` frames of ``spec``: drawn evenly from a file or image folder, the first
    ``count`` of a camera, stream or synthetic pattern (they have no end to spread over). A source with
    fewer frames than ``count`` is a RunError that says how many it has."""
    asked = asked or count
    kind = sources.find_kind(spec)
    if kind.live or kind.name == "synthetic":
        src = sources.open_source(spec, options=options)
        try:
            for i in range(count):
                try:
                    img = src.read()
                except sources.SourceLost as e:
                    raise RunError(f"source {spec} stopped after {i} of the {count} calibration frames ({e}); "
                                   "check the source, or give fewer --calibration-frames") from e
                if img is None:
                    raise _too_few(spec, i, count, asked, parts)
                keep(i, img)
        finally:
            src.close()
        return CalibrationPick(spec, tuple(range(count)), None, replayable=not kind.live)
    total = _declared_frames(spec) if kind.name == "file" else None
    for _ in range(2):
        if total is None:
            total = _count_frames(spec, options)
        if total < count:
            raise _too_few(spec, total, count, asked, parts)
        wanted = evenly(total, count)
        kept = _Kept(keep)
        seen = _read_indices(spec, options, wanted, kept)
        if kept.count == count:
            return CalibrationPick(spec, wanted, total, replayable=True)
        total = seen  # the container declared more frames than it holds: spread over what it has
    raise _too_few(spec, total or 0, count, asked, parts)


@contextlib.contextmanager
def _nncf_output(quiet: bool):
    """NNCF's progress bars go to stderr (stdout holds vidprof's figures), or nowhere with --quiet; its
    INFO lines are dropped either way."""
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)
    sink = io.StringIO() if quiet else sys.stderr
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        nncf_log.setLevel(level)


def _unwritable(e: OSError) -> RunError:
    return RunError(f"cannot write the INT8 variant into vidprof's cache folder {cache_root()} ({e.strerror or e}); "
                    "expected a writable folder; free space there or set XDG_CACHE_HOME to another folder")


def quantize(config: RunConfig, settings: QuantizeSettings, log: Callable[[str], None] | None = None,
             quiet: bool = False) -> Variant:
    """The INT8 variant of ``config``'s model, calibrated on frames of its sources through its preprocessing:
    from the cache when it was made before on the same inputs, else made now and cached."""
    import openvino as ov

    from vidprof.pipeline.build import model_input_stage, read_model
    from vidprof.stages.model_input import read_input_spec

    versions = {"nncf": nncf_version(), "openvino": ""}  # first: a missing extra fails before anything is read
    say = log or (lambda _msg: None)
    model_path = config.model or assets.sample_model_path()
    specs = list(dict.fromkeys(config.sources or (assets.sample_clip_path(),)))
    n = settings.calibration_frames
    if n < len(specs):
        raise UsageError(f"--calibration-frames {n}: fewer than the {len(specs)} sources; expected at least one "
                         "frame from each")
    sizes = []
    for spec in specs:
        src = sources.open_source(spec, options=config.source_options())
        sizes.append((src.width, src.height))
        src.close()
    versions["openvino"] = ov.get_version()
    folder = os.path.join(cache_root(), cache_key(model_path, specs, sizes, config, settings, versions))
    xml = os.path.join(folder, "model.xml")
    if os.path.exists(os.path.join(folder, META)) and os.path.exists(xml):
        try:
            with open(os.path.join(folder, META)) as f:
                variant = Variant.from_dict(json.load(f), xml, cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            # A damaged entry (a disk that filled, a hand edit): made again rather than trusted.
            shutil.rmtree(folder, ignore_errors=True)
        else:
            say(f"INT8 variant of {model_path} found in the cache: {xml} (quantised in "
                f"{variant.quantize_seconds:.1f} s when it was made)")
            return variant

    nncf = import_nncf()
    core = ov.Core()
    model = read_model(core, model_path)
    try:
        spec = read_input_spec(model, sizes[0])  # a dynamic H/W takes the first source's size, as in a run
    except RuntimeError as e:  # a dynamic model that cannot take this size (reshape fails in its graph)
        raise RunError(f"model {model_path} cannot take {sizes[0][0]}x{sizes[0][1]} frames ({runtime_detail(e)}); "
                       "expected a frame size the model accepts (a text detector wants sides that are multiples "
                       "of 32); resize the source") from e
    try:
        os.makedirs(cache_root(), exist_ok=True)
    except OSError as e:
        raise _unwritable(e) from e
    with tempfile.TemporaryDirectory(prefix=".frames-", dir=cache_root()) as tmp:
        # Frames wait on disk, not in memory: 300 frames of 1080p would hold 1.9 GB.
        paths: list[str] = []

        def keep(source: int) -> Callable[[int, np.ndarray], None]:
            def store(i: int, img: np.ndarray) -> None:
                p = os.path.join(tmp, f"s{source}_{i:08d}.npy")
                np.save(p, img)
                paths.append(p)
            return store

        say(f"reading {n} calibration frames from {', '.join(specs)} ...")
        t0 = time.perf_counter()
        picks = tuple(pick_frames(s, k, config.source_options(), keep(j), n, len(specs))
                      for j, (s, k) in enumerate(zip(specs, shares(n, len(specs)), strict=True)))
        read_seconds = time.perf_counter() - t0
        stages: dict[tuple[int, int], Any] = {}

        def to_input(path: str) -> np.ndarray:
            img = np.load(path)
            size = (img.shape[1], img.shape[0])
            if size not in stages:  # one preprocessing per frame size, as a run has one per stream size
                stages[size] = model_input_stage(core, config, spec, *size)
            frame = Frame(0, image=img)
            stages[size].process(frame)
            assert frame.tensor is not None
            return frame.tensor

        preset = nncf.QuantizationPreset.MIXED if settings.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
        say(f"quantising {model_path} to INT8 with NNCF {versions['nncf']} on {len(paths)} frames ...")
        t0 = time.perf_counter()
        try:
            with _nncf_output(quiet):
                quantized = nncf.quantize(model, nncf.Dataset(paths, to_input), subset_size=len(paths),
                                          preset=preset, fast_bias_correction=settings.fast_bias_correction)
        except VidprofError:
            raise  # a frame that could not be preprocessed: its own message says what to do
        except Exception as e:  # NNCF's own error types, and OpenVINO's RuntimeError, say what went wrong
            why = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
            raise RunError(f"NNCF could not quantise {model_path}: {why}; "
                           "expected a float model OpenVINO reads (an already quantised model cannot be "
                           "quantised again)") from e
        quantize_seconds = time.perf_counter() - t0
    variant = Variant("int8", xml, model_path, 0, model_size_bytes(model_path), quantize_seconds, read_seconds,
                      settings, picks, versions)
    staging = tempfile.mkdtemp(prefix=".new-", dir=cache_root())
    try:
        # Uncompressed: the float layers left keep their f32 weights, so what differs from the original is the
        # quantisation alone.
        ov.save_model(quantized, os.path.join(staging, "model.xml"), compress_to_fp16=False)
        with open(os.path.join(staging, META), "w") as f:
            json.dump(variant.to_dict(), f, indent=1)
        try:
            os.replace(staging, folder)  # atomic: another process never sees half a variant
        except OSError:
            if not os.path.exists(os.path.join(folder, META)):
                raise
            # Made by another process meanwhile, from the same inputs: theirs is as good.
    except OSError as e:
        raise _unwritable(e) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"INT8 variant written to {xml} ({quantize_seconds:.1f} s)")
    return Variant("int8", xml, model_path, model_size_bytes(xml), variant.source_size_bytes, quantize_seconds,
                   read_seconds, settings, picks, versions)


# ----------------------------------------------------------------- the model= values of a sweep

@dataclass(frozen=True)
class ModelChoices:
    """What the grid's ``model=`` values stand for: ``original`` is the sweep's --model, ``int8`` its quantised
    variant, anything else a path. ``seen``: the frames of the first stream each variant was calibrated on,
    left out of its agreement."""

    paths: Mapping[str, str | None] = field(default_factory=dict)
    variants: Mapping[str, Variant] = field(default_factory=dict)
    seen: Mapping[str, frozenset[int]] = field(default_factory=dict)

    def path(self, value: str) -> str | None:
        if value in self.paths:
            return self.paths[value]
        if value in NAMED_MODELS:
            raise UsageError(f"--grid model={value}: the {value} variant was not prepared; expected it among the "
                             "grid's model= values before the sweep")
        return value


def prepare_models(values: Sequence[str], base: RunConfig, settings: QuantizeSettings,
                   log: Callable[[str], None] | None = None, quiet: bool = False) -> ModelChoices:
    """Resolve a grid's ``model=`` values, quantising once when ``int8`` is among them; check that the first
    stream keeps frames calibration did not see, for the agreement."""
    paths: dict[str, str | None] = {"original": base.model}
    for v in values:
        if v not in NAMED_MODELS and not os.path.exists(v):
            raise RunError(f"--grid model={v}: no such file; expected original, int8 or the path of a model variant")
    if "int8" not in values:
        return ModelChoices(paths)
    variant = quantize(base, settings, log, quiet)
    paths["int8"] = variant.path
    first = variant.calibration[0]
    seen = first.seen(base.frames, base.loop)
    measured = first.run_frames(base.frames, base.loop)
    if measured is not None and measured - len(seen) < 1:
        raise UsageError(f"--calibration-frames {settings.calibration_frames}: calibration used every one of the "
                         f"{measured} frames the sweep measures of {first.source}, so the INT8 variant's agreement "
                         "would only be measured on frames it was calibrated on; give fewer --calibration-frames "
                         f"(e.g. {max(1, measured // 2)}), a longer source or more --frames")
    return ModelChoices(paths, {"int8": variant}, {"int8": seen})


def row_columns(settings: Mapping[str, str], config: RunConfig, resolved: Mapping[str, Any] | None,
                models: ModelChoices | None) -> dict[str, Any]:
    """The model's columns of a sweep's row: which variant, on which runtime, its size, what quantising cost
    and the precision its compute layers really ran in."""
    name = settings.get("model", "original")
    path = config.model or assets.sample_model_path()
    variant = models.variants.get(name) if models else None
    resolved = resolved or {}
    out: dict[str, Any] = {"model": name, "runtime": config.runtime, "model_path": path,
                           "model_size_bytes": model_size_bytes(path) if os.path.exists(path) else None,
                           "quantize_seconds": variant.quantize_seconds if variant else None,
                           "quantize_cached": variant.cached if variant else None}
    if resolved.get("precision_used"):
        out["precision"] = resolved["precision_used"]
    return out


def render_variants(models: ModelChoices, rows: Sequence[Mapping[str, Any]], file: Any = None) -> None:
    """A small table of the sweep's models beside the main one: size on disk, quantisation time, calibration."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    seen_models: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        if r.get("model_path") and r["model_path"] not in seen_models:
            seen_models[r["model_path"]] = r
    if len(seen_models) < 2 and not models.variants:
        return
    console = Console(file=file, highlight=False, width=None if sys.stdout.isatty() else 200)
    t = Table(title="models", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in ("model", "size MiB", "x original", "quantised in s", "calibration frames", "path"):
        t.add_column(header, justify="left" if header in ("model", "path") else "right")
    original = next((r["model_size_bytes"] for r in seen_models.values() if r.get("model") == "original"), None)
    for path, r in seen_models.items():
        variant = models.variants.get(r.get("model", ""))
        size = r.get("model_size_bytes")
        quant = ""
        frames = ""
        if variant is not None:
            quant = f"{variant.quantize_seconds:.1f}" + (" (cached)" if variant.cached else "")
            held = models.seen.get(r["model"], frozenset())
            frames = f"{variant.settings.calibration_frames} ({len(held)} of them measured, left out of agreement)"
        t.add_row(r.get("model", ""), f"{(size or 0) / 2**20:.2f}",
                  f"{size / original:.2f}" if size and original else "", quant, frames, path)
    console.print(t)


# ----------------------------------------------------------------- vidprof optimize

def _run_config(args: argparse.Namespace) -> RunConfig:
    """The settings as `vidprof run` would read them, by run's own parser and checks."""
    from vidprof.pipeline.cli import build_parser, config_from_args

    argv = ["run"]
    for s in args.source:
        argv += ["--source", s]
    for flag, value in (("--model", args.model), ("--preprocess", args.preprocess),
                        ("--model-color", args.model_color), ("--mean", args.mean), ("--scale", args.scale)):
        if value is not None:
            argv.append(f"{flag}={value}")  # glued: a mean such as -0.5 must not read as an option
    return config_from_args(build_parser().parse_args(argv), None)


def run_optimize(args: argparse.Namespace) -> int:
    from vidprof.profiling.report import check_writable

    settings = QuantizeSettings(args.calibration_frames, args.preset)
    config = _run_config(args)
    out = args.output
    if not out.lower().endswith(".xml"):
        raise UsageError(f"--output {out}: expected a path ending in .xml (an OpenVINO IR; the weights go beside "
                         "it as .bin)")
    check_writable(out, "--output")  # before minutes of quantisation, not after

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"vidprof: {msg}", file=sys.stderr, flush=True)

    variant = quantize(config, settings, log, quiet=args.quiet)
    bin_out = os.path.splitext(out)[0] + ".bin"
    # The .bin first: a reader that finds the .xml always finds its weights.
    shutil.copyfile(os.path.splitext(variant.path)[0] + ".bin", bin_out)
    shutil.copyfile(variant.path, out)
    size = model_size_bytes(out)
    how = "cached; it took" if variant.cached else "in"
    print(f"wrote {out} (+ {os.path.basename(bin_out)}): INT8, {size / 2**20:.2f} MiB, "
          f"{size / variant.source_size_bytes:.2f}x the original's {variant.source_size_bytes / 2**20:.2f} MiB; "
          f"quantised ({how} {variant.quantize_seconds:.1f} s) on {settings.calibration_frames} frames of "
          f"{', '.join(p.source for p in variant.calibration)}")
    print(f"measure it: vidprof tune --model {config.model or variant.source_model} --grid model=original,{out} ...")
    return 0
