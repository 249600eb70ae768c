"""The embedded sample models, built with OpenVINO's opset API.

The weights are random (seeded): a sample model costs what a real network of its
shape costs, but its outputs mean nothing. Tests use the same builders with
small sizes so they stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import openvino as ov
import openvino.opset13 as ops


@dataclass(frozen=True)
class DetectorSpec:
    """Shape of a MobileNet-like detector with a boxes + scores head."""

    height: int = 300
    width: int = 300
    layout: str = "NCHW"  # or "NHWC"
    element_type: str = "f32"  # or "u8" (the model converts to f32 inside)
    width_mult: float = 1.5
    classes: int = 4
    anchors: int = 3
    dynamic_batch: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.element_type not in ("f32", "u8"):
            raise ValueError(f"element_type must be f32 or u8, got {self.element_type!r}")
        if self.height < 32 or self.width < 32:
            raise ValueError(f"input must be at least 32x32, got {self.width}x{self.height}")


class _Weights:
    """Seeded He-style initialisation so activations stay in a sane range."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def conv(self, out_ch: int, in_ch: int, k: int) -> ov.Node:
        std = np.sqrt(2.0 / (in_ch * k * k))
        w = self._rng.normal(0.0, std, (out_ch, in_ch, k, k)).astype(np.float32)
        return ops.constant(w)

    def depthwise(self, ch: int, k: int) -> ov.Node:
        std = np.sqrt(2.0 / (k * k))
        w = self._rng.normal(0.0, std, (ch, 1, 1, k, k)).astype(np.float32)
        return ops.constant(w)

    def bias(self, ch: int) -> ov.Node:
        return ops.constant(self._rng.normal(0.0, 0.01, (1, ch, 1, 1)).astype(np.float32))


def _conv(x: ov.Node, w: _Weights, in_ch: int, out_ch: int, k: int, stride: int) -> ov.Node:
    pad = k // 2
    y = ops.convolution(x, w.conv(out_ch, in_ch, k), [stride, stride], [pad, pad], [pad, pad], [1, 1])
    return ops.clamp(ops.add(y, w.bias(out_ch)), 0.0, 6.0)


def _dw_separable(x: ov.Node, w: _Weights, in_ch: int, out_ch: int, stride: int) -> ov.Node:
    y = ops.group_convolution(x, w.depthwise(in_ch, 3), [stride, stride], [1, 1], [1, 1], [1, 1])
    y = ops.clamp(ops.add(y, w.bias(in_ch)), 0.0, 6.0)
    return _conv(y, w, in_ch, out_ch, 1, 1)


def build_detector(spec: DetectorSpec = DetectorSpec()) -> ov.Model:
    """A small MobileNet-like single-shot detector.

    Outputs ``boxes`` [1, N, 4] (x1, y1, x2, y2, normalised to 0..1) and
    ``scores`` [1, N, classes] (sigmoid), the layout the detection
    postprocessor decodes with threshold + NMS.
    """
    w = _Weights(spec.seed)
    batch = -1 if spec.dynamic_batch else 1
    if spec.layout == "NCHW":
        shape = [batch, 3, spec.height, spec.width]
    else:
        shape = [batch, spec.height, spec.width, 3]
    param = ops.parameter(shape, ov.Type.f32 if spec.element_type == "f32" else ov.Type.u8, name="image")
    param.output(0).get_tensor().set_names({"image"})
    x: ov.Node = param
    if spec.element_type == "u8":
        x = ops.convert(x, ov.Type.f32)
    if spec.layout == "NHWC":
        x = ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], dtype=np.int64)))
    # Scale 0..255 pixels into 0..1 inside the model, as many exported detectors do.
    x = ops.multiply(x, ops.constant(np.float32(1.0 / 255.0)))

    def ch(c: int) -> int:
        return max(8, int(c * spec.width_mult))

    x = _conv(x, w, 3, ch(16), 3, 2)
    x = _dw_separable(x, w, ch(16), ch(32), 1)
    x = _dw_separable(x, w, ch(32), ch(64), 2)
    x = _dw_separable(x, w, ch(64), ch(64), 1)
    x = _dw_separable(x, w, ch(64), ch(128), 2)
    x = _dw_separable(x, w, ch(128), ch(128), 1)
    feat = _dw_separable(x, w, ch(128), ch(256), 2)
    feat = _dw_separable(feat, w, ch(256), ch(256), 1)

    a, c = spec.anchors, spec.classes
    box_raw = ops.convolution(feat, w.conv(a * 4, ch(256), 1), [1, 1], [0, 0], [0, 0], [1, 1])
    cls_raw = ops.convolution(feat, w.conv(a * c, ch(256), 1), [1, 1], [0, 0], [0, 0], [1, 1])

    def to_rows(t: ov.Node, per_anchor: int) -> ov.Node:
        # [B, A*K, H, W] -> [B, H, W, A*K] -> [B, H*W*A, K]
        t = ops.transpose(t, ops.constant(np.array([0, 2, 3, 1], dtype=np.int64)))
        return ops.reshape(t, ops.constant(np.array([0, -1, per_anchor], dtype=np.int64)), special_zero=True)

    raw = ops.sigmoid(to_rows(box_raw, 4))
    centre, size = ops.split(raw, ops.constant(np.int64(2)), 2).outputs()
    half = ops.multiply(size, ops.constant(np.float32(0.25)))
    boxes = ops.concat([ops.subtract(centre, half), ops.add(centre, half)], axis=2)
    # A negative prior keeps random-weight scores mostly low, like a real detector's
    # background, so NMS sees tens of candidates rather than half the anchors.
    scores = ops.sigmoid(ops.add(to_rows(cls_raw, c), ops.constant(np.float32(-1.5))))
    boxes_out = ops.result(boxes)
    scores_out = ops.result(scores)
    boxes_out.output(0).get_tensor().set_names({"boxes"})
    scores_out.output(0).get_tensor().set_names({"scores"})
    model = ov.Model([boxes_out, scores_out], [param], "vidprof_sample_detector")
    # Declare the layout so vidprof reads it rather than guessing from the shape.
    param.set_layout(ov.Layout(spec.layout))
    return model


def build_classifier(height: int = 64, width: int = 64, classes: int = 10, seed: int = 1) -> ov.Model:
    """A tiny NCHW f32 classifier with a [1, classes] softmax output."""
    w = _Weights(seed)
    param = ops.parameter([1, 3, height, width], ov.Type.f32, name="image")
    x = _conv(param, w, 3, 16, 3, 2)
    x = _dw_separable(x, w, 16, 32, 2)
    x = ops.reduce_mean(x, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    dense = np.random.default_rng(seed).normal(0, 0.3, (32, classes)).astype(np.float32)
    logits = ops.matmul(x, ops.constant(dense), False, False)
    out = ops.result(ops.softmax(logits, 1))
    out.output(0).get_tensor().set_names({"probs"})
    return ov.Model([out], [param], "vidprof_test_classifier")


def build_ssd(height: int = 64, width: int = 64, detections: int = 20, seed: int = 2) -> ov.Model:
    """A tiny model with an SSD-style [1, 1, N, 7] output.

    Rows are (image_id, label, confidence, x1, y1, x2, y2); the content is derived
    from the image so the graph cannot be folded into a constant.
    """
    param = ops.parameter([1, 3, height, width], ov.Type.f32, name="image")
    pooled = ops.reduce_mean(param, ops.constant(np.array([1, 2, 3], dtype=np.int64)), keep_dims=False)  # [1]
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, 1.0, (1, 1, detections, 7)).astype(np.float32)
    base[..., 0] = 0.0
    base[..., 1] = rng.integers(1, 5, detections)
    base[..., 3:5] *= 0.5
    base[..., 5:7] = base[..., 3:5] + 0.3
    pooled4 = ops.reshape(pooled, ops.constant(np.array([1, 1, 1, 1], dtype=np.int64)), False)
    tiny = ops.multiply(pooled4, ops.constant(np.float32(0.0)))
    out = ops.result(ops.add(ops.constant(base), tiny))
    out.output(0).get_tensor().set_names({"detection_out"})
    return ov.Model([out], [param], "vidprof_test_ssd")
