"""The build step: a config becomes the frozen parts a run is made of.

    config ─▶ build ─▶ Parts: a source and a preprocess per stream, ONE compiled model, the decoder

This is the only place that opens sources, chooses the preprocessing placement and the output
decoder, and compiles the model; the runner, ``vidprof tune`` and the bench scripts all go through it,
so what they measure is built the same way.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openvino as ov

from vidprof.pipeline.config import RunConfig, StreamSpec
from vidprof.profiling.errors import RunError, UsageError, runtime_detail
from vidprof.samples import assets
from vidprof.stages import sources
from vidprof.stages.frame import Frame
from vidprof.stages.inference import InferenceOptions, compile_model, resolved_nireq
from vidprof.stages.model_input import InputSpec, read_input_spec
from vidprof.stages.ort_inference import OrtModel, open_session
from vidprof.stages.postprocess import Postprocess
from vidprof.stages.precision import compute_precisions, precision_used
from vidprof.stages.preprocess import (
    FusedPreprocess,
    HostPreprocess,
    SeparatePreprocess,
    compile_preprocessing,
    fuse_preprocessing,
)

SYNTHETIC_DEFAULT_SECONDS = 10.0
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


@dataclass(frozen=True)
class StreamParts:
    """One stream's own parts: its source and its preprocessing (each stream decodes on its own)."""

    spec: StreamSpec
    source: sources.Source
    preprocess: Any  # a Stage: HostPreprocess | SeparatePreprocess | FusedPreprocess
    frame_limit: int | None  # per stream; None: until the source ends (or --duration)

    def describe(self) -> dict[str, Any]:
        s = self.source
        return {"label": self.spec.label, "source": s.description, "kind": s.kind,
                "size": [s.width, s.height], "live": s.live, "frame_limit": self.frame_limit}


@dataclass(frozen=True)
class Parts:
    streams: tuple[StreamParts, ...]
    model: ov.Model  # the graph that was compiled (with fused preprocessing, if any): what benchmark_app can run
    compiled: ov.CompiledModel | OrtModel  # OrtModel: --runtime onnxruntime
    nireq: int
    postprocess: Postprocess  # stateless per frame: one decoder serves every stream
    input_spec: InputSpec
    model_path: str
    premade_input: np.ndarray  # a blank frame preprocessed: warm-up and model-only input
    original_names: frozenset[str] | None  # the model's own ops, to tell fused preprocessing apart
    startup: dict[str, Any] = field(default_factory=dict)  # read_model, compile seconds; cache state
    resolved: dict[str, Any] = field(default_factory=dict)  # what the device chose

    def close(self) -> None:
        for s in self.streams:
            for part in (s.source, s.preprocess):
                try:
                    part.close()
                except Exception:  # closing must not hide the run's own result
                    pass
        try:
            self.postprocess.close()
        except Exception:
            pass


def check_device(core: ov.Core, device: str) -> None:
    """Fail on a device that is not here before compiling anything (OpenVINO's own message is opaque)."""
    available = core.available_devices
    for part in device.replace(":", ",").split(","):
        name = part.strip()
        base = name.split(".")[0]
        if not name or base in VIRTUAL_DEVICES:
            continue
        if name not in available and base not in available:
            raise RunError(f"--device {device}: {name} is not available here (available: {', '.join(available)}); "
                           "choose one of those, or AUTO")


def check_streams(core: ov.Core, options: InferenceOptions) -> None:
    """Refuse a --streams the device cannot run before compiling: given more, OpenVINO quietly runs its own
    maximum, and the run would be measured with a setting other than the one asked for.

    AUTO, MULTI, ... pass the setting on to the devices they list (all devices here when they list none):
    refused when none of those can run it."""
    if options.streams is None:
        return
    device = options.device
    if device.split(":")[0].split(".")[0] in VIRTUAL_DEVICES:
        listed = device.partition(":")[2]
        # "BATCH:CPU(4)" names the device with a batch size in brackets.
        candidates = [d.split("(")[0].strip() for d in listed.split(",") if d.strip()] or list(core.available_devices)
    else:
        candidates = [device]
    ranges: dict[str, tuple[int, int]] = {}
    for name in candidates:
        try:
            low, high = (int(x) for x in core.get_property(name, "RANGE_FOR_STREAMS"))
        except (RuntimeError, TypeError, ValueError):
            return  # a device that does not say: its compile step decides
        ranges[name] = (low, high)
    if not ranges or any(low <= options.streams <= high for low, high in ranges.values()):
        return
    if candidates == [device]:
        low, high = ranges[device]
        runs = f"{device} runs {low} to {high} inference streams"
    else:
        runs = f"{device}'s devices run " + ", ".join(f"{n}: {lo} to {hi}" for n, (lo, hi) in ranges.items()) + \
            " inference streams"
    raise RunError(f"--streams {options.streams}: {runs} on this machine; give --streams in that range, or leave "
                   "it out for the device's choice")


def check_cache_dir(path: str | None) -> None:
    """Refuse a --cache-dir that cannot hold a cache before compiling: OpenVINO turns the cache off without a
    word when the path is a file, creates any missing folders on the way (a typo becomes a new tree), and
    fails deep in compile_model on a folder it cannot create."""
    if not path:
        return
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise RunError(f"--cache-dir {path}: is a file; expected a folder for OpenVINO's model cache; "
                           "choose another path")
        folder = path
    else:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise RunError(f"--cache-dir {path}: folder {folder} does not exist; expected an existing folder or a "
                           "new one inside an existing folder; create it or choose another path")
    # Tried for real: permission bits say nothing for root, a read-only mount or /proc.
    probe = os.path.join(folder, f".vidprof-cache-check-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise RunError(f"--cache-dir {path}: folder {folder} is not writable ({e.strerror or e}); "
                       "choose a writable folder") from e


def default_pipeline_name(source: str | None) -> str:
    """A short, label-safe name from the source: 'sample', the file's stem, 'camera0', the URL's host."""
    if source is None:
        return "sample"
    kind = sources.source_kind(source)
    if kind == "synthetic":
        base = "synthetic"
    elif kind == "camera":
        base = "camera" + re.sub(r"\D", "", source)
    elif kind == "url":
        base = re.sub(r"^[a-z]+://(?:[^@/]*@)?", "", source.lower()).split("/")[0]
    else:
        base = os.path.splitext(os.path.basename(source.rstrip("/*")))[0] or "images"
    name = re.sub(r"[^A-Za-z0-9_.:-]", "_", base)[:64]
    return name or "vidprof"


def cache_state(cache_dir: str | None, before: set[str], after: set[str]) -> str:
    """miss: compiling wrote a new blob; hit: it wrote none and one was there; off: no cache in use
    (none asked for, or a device that does not export compiled models)."""
    if not cache_dir:
        return "off"
    if after - before:
        return "miss"
    return "hit" if before else "off"


def _cache_files(path: str | None) -> set[str]:
    if not path or not os.path.isdir(path):
        return set()
    return {f for f in os.listdir(path) if f.endswith(".blob")}


def open_sources(config: RunConfig) -> list[tuple[StreamSpec, sources.Source]]:
    """Open every stream's source, closing those already open if one fails."""
    opened: list[tuple[StreamSpec, sources.Source]] = []
    try:
        for spec in config.streams():
            src = sources.open_source(spec.source or assets.sample_clip_path(), realtime=config.realtime,
                                      fps=config.realtime_fps, options=config.source_options())
            opened.append((spec, src))
    except BaseException:
        for _, src in opened:
            src.close()
        raise
    return opened


def _frame_limit(config: RunConfig, src: sources.Source) -> int | None:
    if config.frames is not None:
        return config.frames
    if config.duration is None and src.kind == "synthetic":
        return int((src.fps or 30.0) * SYNTHETIC_DEFAULT_SECONDS)
    return None


def read_model(core: ov.Core, path: str) -> ov.Model:
    if not os.path.exists(path):
        raise RunError(f"model {path}: no such file; expected an OpenVINO IR (.xml), ONNX, TFLite, "
                       "TensorFlow or PaddlePaddle model")
    # A folder is a model only as a TensorFlow SavedModel; any other folder gets a frontend's internal check.
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise RunError(f"model {path}: is a folder; expected a model file (OpenVINO IR .xml, .onnx, .tflite, ...) "
                       "or a TensorFlow SavedModel folder; give the model file's path")
    try:
        return core.read_model(path)
    except RuntimeError as e:
        raise RunError(f"cannot read model {path}: {runtime_detail(e)}; expected a valid OpenVINO IR "
                       "(.xml + .bin), ONNX, TFLite, TensorFlow or PaddlePaddle model") from e


def set_batch(model: ov.Model, batch: int, path: str) -> None:
    """Reshape the model's (single, 4-D) input to ``batch`` frames; its outputs follow."""
    port = model.inputs[0]
    shape = port.get_partial_shape()
    shape[0] = batch
    try:
        model.reshape({port: shape})
    except RuntimeError as e:
        raise RunError(f"--batch {batch}: the model {path} cannot be reshaped to {batch} frames ({runtime_detail(e)}); "
                       "use --batch 1 or export the model with a dynamic batch") from e
    bad = [o.get_any_name() if o.get_names() else str(i) for i, o in enumerate(model.outputs)
           if o.get_partial_shape().rank.is_dynamic or o.get_partial_shape()[0] != batch]
    if bad:
        raise RunError(f"--batch {batch}: the model's outputs {bad} do not have the batch as their first axis; "
                       "each frame's results could not be told apart; use --batch 1")


def resolved_settings(compiled: ov.CompiledModel | OrtModel, nireq: int) -> dict[str, Any]:
    """What the device actually chose: users argue about defaults, so record them."""
    if isinstance(compiled, OrtModel):
        return compiled.resolved(nireq)
    out: dict[str, Any] = {"nireq": nireq}
    for key, name in (("streams", "NUM_STREAMS"), ("precision", "INFERENCE_PRECISION_HINT"),
                      ("hint", "PERFORMANCE_HINT"), ("threads", "INFERENCE_NUM_THREADS")):
        try:
            value = compiled.get_property(name)
        except RuntimeError:
            out[key] = None
            continue
        # An element type prints as "<Type: 'float32'>"; its short name ("f32") is what users type.
        out[key] = value.get_type_name() if isinstance(value, ov.Type) else str(value)
    # The hint's precision says nothing of an INT8 model's quantised layers: the execution graph does.
    out["compute_precisions"] = compute_precisions(compiled)
    out["precision_used"] = precision_used(out["compute_precisions"], out.get("precision"))
    return out


def build(config: RunConfig) -> Parts:
    """Open the sources, read and compile the model once, and make each stream's preprocessing."""
    opened = open_sources(config)
    try:
        return _build(config, opened)
    except BaseException:
        for _, src in opened:
            src.close()
        raise


def _build(config: RunConfig, opened: list[tuple[StreamSpec, sources.Source]]) -> Parts:
    inf = config.inference
    startup: dict[str, Any] = {}
    model_path = config.model or assets.sample_model_path()
    core = ov.Core()
    check_device(core, inf.device)
    check_streams(core, inf)
    check_cache_dir(inf.cache_dir)
    t0 = time.perf_counter()
    model = read_model(core, model_path)
    startup["read_model"] = time.perf_counter() - t0

    sizes = {(s.width, s.height) for _, s in opened}
    first = opened[0][1]
    spec = read_input_spec(model, (first.width, first.height))
    pre_opts = config.preprocess_options
    original_names = None
    if config.preprocess == "fused":
        if len(sizes) > 1:
            listed = ", ".join(f"{st.label}: {s.width}x{s.height}" for st, s in opened)
            raise UsageError(f"--preprocess fused builds one frame size into the model, but the streams differ "
                             f"({listed}); use --preprocess separate or host for streams of different sizes")
        # Names of the model's own ops, to tell fused preprocessing nodes apart in perf counters.
        original_names = frozenset(op.get_friendly_name() for op in model.get_ops())
        model = fuse_preprocessing(model, spec, pre_opts, first.width, first.height)
    if inf.batch > 1:
        set_batch(model, inf.batch, model_path)

    before = _cache_files(inf.cache_dir)
    t0 = time.perf_counter()
    # The runtime hook: OpenVINO compiles the model; --runtime onnxruntime opens an ONNX Runtime session on the
    # same file instead (the native framework, for comparison), which takes the same preprocessed tensor.
    compiled: Any = (open_session(model_path, model, inf) if config.runtime == "onnxruntime"
                     else compile_model(core, model, inf))
    startup["compile"] = time.perf_counter() - t0
    startup["cache"] = cache_state(inf.cache_dir, before, _cache_files(inf.cache_dir))
    nireq = compiled.nireq(inf) if isinstance(compiled, OrtModel) else resolved_nireq(compiled, inf)

    graphs: dict[tuple[int, int], ov.CompiledModel] = {}  # one separate-preprocessing graph per frame size
    streams = []
    for st, src in opened:
        w, h = src.width, src.height
        if config.preprocess == "fused":
            pre: Any = FusedPreprocess(w, h)
        elif config.preprocess == "separate":
            if (w, h) not in graphs:
                graphs[(w, h)] = compile_preprocessing(core, inf.device, spec, pre_opts, w, h)
            pre = SeparatePreprocess(core, inf.device, spec, pre_opts, w, h, compiled=graphs[(w, h)])
        else:
            pre = HostPreprocess(spec, pre_opts)
        streams.append(StreamParts(st, src, pre, _frame_limit(config, src)))

    # The decoder sees one frame's outputs: with a batch, each frame gets its slice [i:i+1].
    shapes = [(1, *tuple(o.get_shape())[1:]) if inf.batch > 1 else tuple(o.get_shape()) for o in compiled.outputs]
    postprocess = Postprocess(config.postprocess, shapes,
                              [o.get_any_name() if o.get_names() else "" for o in compiled.outputs])
    # A blank frame of the first stream's size, preprocessed: the warm-up input, and the pre-made input
    # for model-only measurements.
    blank = Frame(-1, image=np.zeros((first.height, first.width, 3), np.uint8))
    streams[0].preprocess.process(blank)
    assert blank.tensor is not None
    return Parts(tuple(streams), model, compiled, nireq, postprocess, spec, model_path, blank.tensor, original_names,
                 startup, resolved_settings(compiled, nireq))


def model_input_stage(core: ov.Core, config: RunConfig, spec: InputSpec, width: int, height: int) -> Any:
    """A stage that turns a ``width`` x ``height`` frame into the model's own input tensor as the run's
    placement does: OpenCV for ``host``; the PrePostProcessor steps compiled as their own graph for ``separate``
    and ``fused`` (fused builds these very steps into the model). What INT8 calibration feeds the model, so it
    is calibrated on the tensors it will see."""
    if config.preprocess == "host":
        return HostPreprocess(spec, config.preprocess_options)
    # On the CPU whatever --device says: calibration runs the model there too.
    return SeparatePreprocess(core, "CPU", spec, config.preprocess_options, width, height)
