"""Preprocessing: a decoded BGR u8 frame -> the model's input tensor, in one of three places.

- ``separate``: an OpenVINO PrePostProcessor graph compiled as its own model and run as its own stage.
- ``fused``: the same PrePostProcessor steps built into the model, so they run inside the infer request
  (this stage then only wraps the frame as a tensor, no copy).
- ``host``: OpenCV/numpy on the host.

All three produce the same tensor up to interpolation rounding; the figures show which is cheaper
on a given device rather than assuming it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino.preprocess import ColorFormat, InputInfo, PrePostProcessor, ResizeAlgorithm

from vidprof.profiling.errors import RunError, UsageError, runtime_detail
from vidprof.stages.frame import Frame
from vidprof.stages.model_input import InputSpec

PLACEMENTS = ("separate", "fused", "host")


@dataclass(frozen=True)
class PreprocessOptions:
    model_color: str = "bgr"  # channel order the model expects: "bgr" or "rgb"
    mean: tuple[float, ...] | None = None  # per channel, in the model's channel order
    scale: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.model_color not in ("bgr", "rgb"):
            raise UsageError(f"--model-color {self.model_color!r}: expected bgr or rgb")
        for name, v in (("mean", self.mean), ("scale", self.scale)):
            if v is not None and len(v) not in (1, 3):
                raise UsageError(f"--{name} {','.join(map(str, v))}: expected 1 or 3 comma-separated numbers")
        if self.scale is not None and any(s == 0 for s in self.scale):
            raise UsageError("--scale: expected non-zero values; 0 would divide by zero")


def _check(spec: InputSpec, opts: PreprocessOptions) -> None:
    if spec.dtype == np.uint8 and (opts.mean is not None or opts.scale is not None):
        raise UsageError(f"--mean/--scale given but the model input {spec.name!r} is u8; "
                         "mean/scale need a float input; drop them")


def add_preprocessing(inp: InputInfo, spec: InputSpec, opts: PreprocessOptions, frame_w: int, frame_h: int) -> None:
    """Declare a u8 BGR NHWC frame of the source's size and the steps to the model's input."""
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")) \
        .set_color_format(ColorFormat.BGR).set_shape([1, frame_h, frame_w, 3])
    pre = inp.preprocess()
    # Resize first, on u8: converting a 720p frame to f32 before shrinking it costs ~2x.
    pre.resize(ResizeAlgorithm.RESIZE_LINEAR, spec.height, spec.width)
    if spec.channels == 1:
        pre.convert_color(ColorFormat.GRAY)
    elif opts.model_color == "rgb":
        pre.convert_color(ColorFormat.RGB)
    if spec.ov_type != ov.Type.u8:
        pre.convert_element_type(spec.ov_type if opts.mean is None and opts.scale is None else ov.Type.f32)
    if opts.mean is not None:
        pre.mean(list(opts.mean) if len(opts.mean) == 3 else opts.mean[0])
    if opts.scale is not None:
        pre.scale(list(opts.scale) if len(opts.scale) == 3 else opts.scale[0])
    if (opts.mean is not None or opts.scale is not None) and spec.ov_type != ov.Type.f32:
        pre.convert_element_type(spec.ov_type)
    inp.model().set_layout(ov.Layout(spec.layout))


class HostPreprocess:
    """cv2.resize + colour + layout + type on the host."""

    name = "preprocess"
    inline = True  # cheap enough to run on the thread that submits: no thread and hand-off of its own

    def __init__(self, spec: InputSpec, opts: PreprocessOptions) -> None:
        _check(spec, opts)
        self._spec = spec
        self._opts = opts
        self._mean = np.asarray(opts.mean, np.float32) if opts.mean is not None else None
        self._scale = np.asarray(opts.scale, np.float32) if opts.scale is not None else None

    def process(self, frame: Frame) -> None:
        s = self._spec
        assert frame.image is not None
        x = frame.image
        if x.shape[:2] != (s.height, s.width):  # a same-size resize would only copy
            x = cv2.resize(x, (s.width, s.height), interpolation=cv2.INTER_LINEAR)
        if s.channels == 1:
            x = cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)[..., None]
        elif self._opts.model_color == "rgb":
            x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)
        if self._mean is not None or self._scale is not None:
            x = x.astype(np.float32)
            if self._mean is not None:
                x -= self._mean
            if self._scale is not None:
                x /= self._scale
        if s.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        # One copy does layout and type together and leaves a contiguous array to share with the request.
        frame.tensor = np.ascontiguousarray(x[None], dtype=s.dtype)

    def close(self) -> None:
        pass


class SeparatePreprocess:
    """A PrePostProcessor graph compiled on its own and run as its own stage.

    Its output tensor is set to a fresh array per frame so the graph writes the model's input
    directly where the inference stage will read it: no extra copy.
    """

    name = "preprocess"
    # Threads a stream of a file runs this stage on, each with its own request of the same graph. Its graph runs
    # on the calling thread, and with one thread the stage was the bottleneck of the default pipeline on 2 cores:
    # busy 95 % while that thread waited for a core behind the inference (5.9 ms a frame of wall time for ~3 ms of
    # CPU), the cores 16 % idle. A second thread uses the core the first one waits for.
    workers = 2

    def __init__(self, core: ov.Core, device: str, spec: InputSpec, opts: PreprocessOptions,
                 frame_w: int, frame_h: int, compiled: ov.CompiledModel | None = None) -> None:
        """``compiled``: a graph from ``compile_preprocessing`` for the same size, shared between streams
        (each stream still gets its own request); None compiles one here."""
        _check(spec, opts)
        self._spec = spec
        self._size = (frame_h, frame_w)
        if compiled is None:
            compiled = compile_preprocessing(core, device, spec, opts, frame_w, frame_h)
        self._compiled = compiled
        self._request = compiled.create_infer_request()

    def fork(self) -> SeparatePreprocess:
        """The same stage with a request of its own, for another thread."""
        twin = copy.copy(self)
        twin._request = self._compiled.create_infer_request()
        return twin

    def process(self, frame: Frame) -> None:
        assert frame.image is not None
        img = frame.image
        if img.shape[:2] != self._size:
            raise RunError(f"frame {frame.index} is {img.shape[1]}x{img.shape[0]}, the preprocessing graph was "
                           f"built for {self._size[1]}x{self._size[0]}; use --preprocess host for mixed sizes")
        out = np.empty(self._spec.shape, self._spec.dtype)
        self._request.set_input_tensor(ov.Tensor(np.ascontiguousarray(img[None]), shared_memory=True))
        self._request.set_output_tensor(ov.Tensor(out, shared_memory=True))
        self._request.infer()
        frame.tensor = out

    def close(self) -> None:
        pass


def compile_preprocessing(core: ov.Core, device: str, spec: InputSpec, opts: PreprocessOptions,
                          frame_w: int, frame_h: int) -> ov.CompiledModel:
    """The ``separate`` placement's graph: an identity model with the PrePostProcessor steps in front."""
    _check(spec, opts)
    param = ops.parameter(list(spec.shape), spec.ov_type, name="model_input")
    identity = ov.Model([ops.result(param)], [param], "vidprof_preprocess")
    ppp = PrePostProcessor(identity)
    add_preprocessing(ppp.input(), spec, opts, frame_w, frame_h)
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if device.upper() == "CPU":
        # One thread: a second one would fight the inference streams for the same cores and
        # stretch both (measured: ~7 ms a 720p frame with two threads vs ~2-3 ms with one).
        config["INFERENCE_NUM_THREADS"] = "1"
        # Unpinned: a one-thread graph runs on the calling thread, and pinning would tie vidprof's preprocess
        # thread to one core (seen in /proc/<pid>/task/<tid>/status: Cpus_allowed_list 0), where it then
        # waits behind an inference stream while the other core may be idle.
        config["ENABLE_CPU_PINNING"] = "NO"
    try:
        return core.compile_model(ppp.build(), device, config)
    except RuntimeError as e:
        raise RunError(f"could not compile the preprocessing graph on {device}: {runtime_detail(e)}; "
                       "try --preprocess host") from e


class FusedPreprocess:
    """The preprocessing lives in the model; this stage only wraps the frame (no copy)."""

    name = "preprocess"
    inline = True  # nothing to do on the host: no thread and hand-off of its own

    def __init__(self, frame_w: int, frame_h: int) -> None:
        self._size = (frame_h, frame_w)

    def process(self, frame: Frame) -> None:
        assert frame.image is not None
        if frame.image.shape[:2] != self._size:
            raise RunError(f"frame {frame.index} is {frame.image.shape[1]}x{frame.image.shape[0]}, the model was "
                           f"built for {self._size[1]}x{self._size[0]}; use --preprocess host for mixed sizes")
        frame.tensor = np.ascontiguousarray(frame.image)[None]

    def close(self) -> None:
        pass


def fuse_preprocessing(model: ov.Model, spec: InputSpec, opts: PreprocessOptions,
                       frame_w: int, frame_h: int) -> ov.Model:
    _check(spec, opts)
    ppp = PrePostProcessor(model)
    add_preprocessing(ppp.input(), spec, opts, frame_w, frame_h)
    return ppp.build()
