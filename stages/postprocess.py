"""Postprocessing: raw outputs -> results. The decoder is picked from the output shapes or by name.

Decoders live in one table, ``DECODER_TABLE``; adding one is an entry there plus its decode function.

- ``detection``: boxes [1, N, 4] (x1, y1, x2, y2) + scores [1, N, C] -> threshold + class-aware NMS.
- ``ssd``: one [1, 1, N, 7] output of (image_id, label, conf, x1, y1, x2, y2) rows -> threshold.
- ``classification``: one [1, C] output -> top-k (index, score).
- ``probability_map``: one [1, 1, H, W] map of per-pixel scores (a DB text detector such as PP-OCR's, a
  heat map) -> thresholded regions -> boxes.
- ``passthrough``: anything else; outputs are kept as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from vidprof.profiling.errors import RunError, UsageError
from vidprof.stages.frame import Frame

Shape = tuple[int, ...]
Decode = Callable[[Sequence[np.ndarray]], object]  # the model's outputs -> frame.result


@dataclass(frozen=True)
class PostprocessOptions:
    kind: str = "auto"
    threshold: float = 0.5
    iou: float = 0.5
    top_k: int = 5

    def __post_init__(self) -> None:
        if self.kind not in DECODERS:
            raise UsageError(f"--postprocess {self.kind!r}: expected one of {', '.join(DECODERS)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"--threshold {self.threshold}: expected a score between 0 and 1")
        if not 0.0 < self.iou <= 1.0:
            raise UsageError(f"--iou {self.iou}: expected an overlap in (0, 1]")
        if self.top_k < 1:
            raise UsageError(f"--top-k {self.top_k}: expected at least 1")


# --- recognisers: the auto-pick rule of each decoder, from the output shapes (and names, where they help)

def _looks_like_detection(shapes: Sequence[Shape], names: Sequence[str]) -> bool:
    if len(shapes) != 2:
        return False
    a, b = shapes
    return len(a) == 3 and len(b) == 3 and a[1] == b[1] and 4 in (a[2], b[2])


def _looks_like_ssd(shapes: Sequence[Shape], names: Sequence[str]) -> bool:
    if len(shapes) != 1:
        return False
    s = shapes[0]
    return len(s) == 4 and s[0] == 1 and s[1] == 1 and s[3] == 7


def _looks_like_classification(shapes: Sequence[Shape], names: Sequence[str]) -> bool:
    if len(shapes) != 1:
        return False
    s = shapes[0]
    return len(s) == 2 and s[0] == 1 and s[1] > 1


def _looks_like_probability_map(shapes: Sequence[Shape], names: Sequence[str]) -> bool:
    if len(shapes) != 1:
        return False
    s = shapes[0]
    # A [1, 1, N, 7] output is SSD's rows, not a map seven pixels wide.
    return len(s) == 4 and s[0] == 1 and s[1] == 1 and min(s[2], s[3]) >= 2 and not _looks_like_ssd(shapes, names)


def _recognises_nothing(shapes: Sequence[Shape], names: Sequence[str]) -> bool:
    return False


# --- decoders: built once per model (settings, which output is which), then called per frame

def _detection(opts: PostprocessOptions, shapes: Sequence[Shape], names: Sequence[str]) -> Decode:
    # Which output holds boxes: the one named like boxes, else the first with 4 columns (a head with
    # 4 classes has two such outputs, and names settle it).
    named = [i for i, n in enumerate(names) if "box" in n.lower()]
    box = named[0] if named else (0 if shapes[0][2] == 4 else 1)
    return lambda out: _nms_rows(out[box][0], out[1 - box][0], opts)


def _nms_rows(boxes: np.ndarray, scores: np.ndarray, opts: PostprocessOptions) -> np.ndarray:
    """Rows of (x1, y1, x2, y2, score, label) after threshold and per-class NMS."""
    labels = scores.argmax(axis=1)
    best = scores[np.arange(scores.shape[0]), labels]
    sel = best >= opts.threshold
    if not sel.any():
        return np.zeros((0, 6), np.float32)
    b, s, lab = boxes[sel], best[sel], labels[sel]
    xywh = np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
    keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), s.tolist(), lab.tolist(), opts.threshold, opts.iou)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return np.column_stack([b[keep], s[keep], lab[keep]]).astype(np.float32)


def _ssd(opts: PostprocessOptions, shapes: Sequence[Shape], names: Sequence[str]) -> Decode:
    def decode(out: Sequence[np.ndarray]) -> np.ndarray:
        """(image_id, label, conf, x1, y1, x2, y2) rows -> (x1, y1, x2, y2, score, label) above the threshold."""
        rows = out[0].reshape(-1, 7)
        keep = rows[rows[:, 2] >= opts.threshold]
        return np.column_stack([keep[:, 3:7], keep[:, 2], keep[:, 1]]).astype(np.float32)
    return decode


def _classification(opts: PostprocessOptions, shapes: Sequence[Shape], names: Sequence[str]) -> Decode:
    def decode(out: Sequence[np.ndarray]) -> np.ndarray:
        """Rows of (class index, score), best first."""
        p = out[0][0]
        k = min(opts.top_k, p.shape[0])
        idx = np.argpartition(-p, k - 1)[:k]  # a partial sort: C can be large, k is small
        idx = idx[np.argsort(-p[idx])]
        return np.column_stack([idx, p[idx]]).astype(np.float32)
    return decode


# A DB-style map marks a shrunk core of each region (the text kernel); its box is grown back by
# area * ratio / perimeter, as DB's "unclip" does (1.5 in the DB paper, 1.6 in PP-OCR's config).
UNCLIP_RATIO = 1.5
MIN_REGION_SIDE = 3  # map pixels: smaller specks are noise at the threshold's edge, not regions
MAX_REGIONS = 1000  # as PP-OCR's max_candidates: a map that is all speckle must not cost a frame seconds


def _probability_map(opts: PostprocessOptions, shapes: Sequence[Shape], names: Sequence[str]) -> Decode:
    height, width = shapes[0][2], shapes[0][3]

    def decode(out: Sequence[np.ndarray]) -> np.ndarray:
        """Rows of (x1, y1, x2, y2, score, 0), coordinates as shares of the map's width and height (so of
        the frame: preprocessing resizes the whole frame to the model's input), score the region's mean."""
        prob = np.asarray(out[0]).reshape(height, width)
        mask = (prob > opts.threshold).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        rows = []
        for c in contours[:MAX_REGIONS]:
            x, y, w, h = cv2.boundingRect(c)
            if min(w, h) < MIN_REGION_SIDE:
                continue
            inside = np.zeros((h, w), np.uint8)
            cv2.fillPoly(inside, [c - np.array([x, y], np.int32)], 1)
            score = float(cv2.mean(prob[y:y + h, x:x + w], mask=inside)[0])
            if score < opts.threshold:
                continue
            perimeter = cv2.arcLength(c, True)
            grow = cv2.contourArea(c) * UNCLIP_RATIO / perimeter if perimeter > 0 else 0.0
            rows.append((max(0.0, x - grow) / width, max(0.0, y - grow) / height,
                         min(float(width), x + w + grow) / width, min(float(height), y + h + grow) / height,
                         score, 0.0))
        return np.asarray(rows, np.float32).reshape(-1, 6)
    return decode


def _passthrough(opts: PostprocessOptions, shapes: Sequence[Shape], names: Sequence[str]) -> Decode:
    return lambda out: out


@dataclass(frozen=True)
class Decoder:
    """One ``--postprocess`` value: when auto picks it, and how it is built for a model's outputs."""

    name: str
    recognises: Callable[[Sequence[Shape], Sequence[str]], bool]  # (output shapes, output names) -> fits
    build: Callable[[PostprocessOptions, Sequence[Shape], Sequence[str]], Decode]


PASSTHROUGH = Decoder("passthrough", _recognises_nothing, _passthrough)

# Auto tries these in order and takes the first that recognises the outputs; passthrough, last, is the
# fallback: it recognises nothing, and fits anything when forced.
DECODER_TABLE: tuple[Decoder, ...] = (
    Decoder("detection", _looks_like_detection, _detection),
    Decoder("ssd", _looks_like_ssd, _ssd),
    Decoder("classification", _looks_like_classification, _classification),
    Decoder("probability_map", _looks_like_probability_map, _probability_map),
    PASSTHROUGH,
)

DECODERS: tuple[str, ...] = ("auto", *(d.name for d in DECODER_TABLE))


def pick_decoder(shapes: Sequence[Shape], names: Sequence[str] = ()) -> str:
    """Recognise the head from the output shapes: the first decoder in the table that fits, else passthrough."""
    return next((d.name for d in DECODER_TABLE if d.recognises(shapes, names)), PASSTHROUGH.name)


def _decoder(name: str) -> Decoder:
    return next(d for d in DECODER_TABLE if d.name == name)  # PostprocessOptions already checked the name


class Postprocess:
    name = "postprocess"

    def __init__(self, opts: PostprocessOptions, output_shapes: Sequence[tuple[int, ...]],
                 output_names: Sequence[str] = ()) -> None:
        shapes = [tuple(s) for s in output_shapes]
        names = list(output_names)
        auto = pick_decoder(shapes, names)
        decoder = _decoder(auto if opts.kind == "auto" else opts.kind)
        # A forced decoder must recognise the outputs itself (not merely be what auto would pick), so two
        # decoders that both fit a head can each be chosen by name.
        if decoder is not PASSTHROUGH and not decoder.recognises(shapes, names):
            raise RunError(f"--postprocess {opts.kind}: the model's outputs {shapes} do not fit it "
                           f"(they look like {auto}); use --postprocess auto or passthrough")
        self.kind = decoder.name
        self._decode = decoder.build(opts, shapes, names)

    def process(self, frame: Frame) -> None:
        frame.result = self._decode(frame.outputs)

    def close(self) -> None:
        pass
