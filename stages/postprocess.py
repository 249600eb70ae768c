"""Postprocessing: raw outputs -> results. The decoder is picked from the output shapes or by name.

- ``detection``: boxes [1, N, 4] (x1, y1, x2, y2) + scores [1, N, C] -> threshold + class-aware NMS.
- ``ssd``: one [1, 1, N, 7] output of (image_id, label, conf, x1, y1, x2, y2) rows -> threshold.
- ``classification``: one [1, C] output -> top-k (index, score).
- ``passthrough``: anything else; outputs are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from vidprof.profiling.errors import RunError, UsageError
from vidprof.stages.frame import Frame

DECODERS = ("auto", "detection", "ssd", "classification", "passthrough")


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


def pick_decoder(shapes: Sequence[tuple[int, ...]]) -> str:
    """Recognise the head from the output shapes."""
    if len(shapes) == 2:
        a, b = shapes
        if len(a) == 3 and len(b) == 3 and a[1] == b[1] and 4 in (a[2], b[2]):
            return "detection"
    if len(shapes) == 1:
        (s,) = shapes
        if len(s) == 4 and s[0] == 1 and s[1] == 1 and s[3] == 7:
            return "ssd"
        if len(s) == 2 and s[0] == 1 and s[1] > 1:
            return "classification"
    return "passthrough"


class Postprocess:
    name = "postprocess"

    def __init__(self, opts: PostprocessOptions, output_shapes: Sequence[tuple[int, ...]],
                 output_names: Sequence[str] = ()) -> None:
        self._opts = opts
        shapes = [tuple(s) for s in output_shapes]
        auto = pick_decoder(shapes)
        self.kind = auto if opts.kind == "auto" else opts.kind
        if opts.kind not in ("auto", "passthrough") and auto != opts.kind:
            raise RunError(f"--postprocess {opts.kind}: the model's outputs {shapes} do not fit it "
                           f"(they look like {auto}); use --postprocess auto or passthrough")
        # Which output holds boxes in a detection head: the one named like boxes, else the first with
        # 4 columns (a head with 4 classes has two such outputs, and names settle it).
        self._box_index = 0
        if self.kind == "detection":
            named = [i for i, n in enumerate(output_names) if "box" in n.lower()]
            self._box_index = named[0] if named else (0 if shapes[0][2] == 4 else 1)

    def process(self, frame: Frame) -> None:
        out = frame.outputs
        if self.kind == "detection":
            frame.result = self._detections(out[self._box_index][0], out[1 - self._box_index][0])
        elif self.kind == "ssd":
            rows = out[0].reshape(-1, 7)
            keep = rows[rows[:, 2] >= self._opts.threshold]
            frame.result = np.column_stack([keep[:, 3:7], keep[:, 2], keep[:, 1]]).astype(np.float32)
        elif self.kind == "classification":
            p = out[0][0]
            k = min(self._opts.top_k, p.shape[0])
            idx = np.argpartition(-p, k - 1)[:k]
            idx = idx[np.argsort(-p[idx])]
            frame.result = np.column_stack([idx, p[idx]]).astype(np.float32)
        else:
            frame.result = out

    def _detections(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Rows of (x1, y1, x2, y2, score, label) after threshold and per-class NMS."""
        labels = scores.argmax(axis=1)
        best = scores[np.arange(scores.shape[0]), labels]
        sel = best >= self._opts.threshold
        if not sel.any():
            return np.zeros((0, 6), np.float32)
        b, s, lab = boxes[sel], best[sel], labels[sel]
        xywh = np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
        keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), s.tolist(), lab.tolist(), self._opts.threshold, self._opts.iou)
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        return np.column_stack([b[keep], s[keep], lab[keep]]).astype(np.float32)

    def close(self) -> None:
        pass
