"""Accuracy agreement between two runs on the same frames: the fourth factor next to throughput,
latency and memory. A faster configuration that changes results must show it."""

from __future__ import annotations

from typing import Any

import numpy as np

# Below this share of matching results a configuration "changes results" and is never recommended.
AGREEMENT_FLOOR = 0.99
IOU_MATCH = 0.5

Outputs = dict[int, tuple[list[np.ndarray], np.ndarray | None]]


def load_outputs(path: str) -> Outputs:
    """Read a ``vidprof run --dump-outputs`` file back into {frame: (outputs, result)}."""
    out: dict[int, tuple[dict[int, np.ndarray], np.ndarray | None]] = {}
    with np.load(path) as z:
        for key in z.files:
            if not key.startswith("f"):
                continue  # another stream's frames (s1f0_o0, ...): comparisons use the first stream
            frame_part, kind = key.split("_", 1)
            index = int(frame_part[1:])
            outputs, _ = out.setdefault(index, ({}, None))
            if kind == "r":
                out[index] = (outputs, z[key])
            else:
                outputs[int(kind[1:])] = z[key]
    return {i: ([o[k] for k in sorted(o)], r) for i, (o, r) in out.items()}


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes (x1, y1, x2, y2): [len(a), len(b)]."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def matched_boxes(ref: np.ndarray, cand: np.ndarray) -> int:
    """Greedy one-to-one matching of rows (x1, y1, x2, y2, score, label) at IoU >= 0.5 with the same label."""
    if len(ref) == 0 or len(cand) == 0:
        return 0
    overlap = iou(ref[:, :4], cand[:, :4])
    overlap[ref[:, None, 5] != cand[None, :, 5]] = 0.0
    matched = 0
    used = np.zeros(len(cand), bool)
    for i in np.argsort(-ref[:, 4]):  # most confident reference boxes first
        row = np.where(used, 0.0, overlap[i])
        j = int(np.argmax(row))
        if row[j] >= IOU_MATCH:
            used[j] = True
            matched += 1
    return matched


BOX_DECODERS = ("detection", "ssd", "probability_map")
DENSE_DECODERS = ("probability_map",)  # their raw output is a map: compared as thresholded maps


def map_overlap(ref: np.ndarray, cand: np.ndarray, threshold: float) -> tuple[int, int]:
    """(intersection, union) of two maps thresholded at ``threshold``, in pixels."""
    a, b = ref > threshold, cand > threshold
    return int(np.count_nonzero(a & b)), int(np.count_nonzero(a | b))


def compare(ref: Outputs, cand: Outputs, decoder: str, floor: float = AGREEMENT_FLOOR,
            exclude: frozenset[int] = frozenset(), threshold: float = 0.5) -> dict[str, Any]:
    """Frame-by-frame agreement of ``cand`` with ``ref``, on ``ref``'s frames less ``exclude`` (the frames an
    INT8 variant was calibrated on: agreement is measured on frames it has not seen).

    ``agreement``: detection/SSD, the F1 of boxes matched one-to-one at IoU >= 0.5 with the same label
    (2 x matched / (reference boxes + candidate boxes)), with ``precision`` and ``recall`` beside it;
    probability maps (dense outputs), the IoU of the maps thresholded at ``threshold`` over all frames
    (``map_iou``), with the F1 of their boxes as ``box_f1``; classification, the share of frames with the
    same top-1; otherwise the share of frames whose raw outputs are within 1e-4 of the reference's range.
    Frames missing from ``cand`` count as disagreeing (their reference boxes count as missed and as wrong).
    """
    frames = [i for i in sorted(ref) if i not in exclude]
    max_diff = 0.0
    agree_num = 0.0
    agree_den = 0.0
    matched = ref_boxes = cand_boxes = 0
    inter = union = 0
    for i in frames:
        r_out, r_res = ref[i]
        if i not in cand:
            max_diff = float("inf")
            n = len(r_res) if isinstance(r_res, np.ndarray) else 0
            ref_boxes += n
            cand_boxes += n  # as if every box were wrong: a lost frame is no better than a wrong one
            agree_den += 1
            if decoder in DENSE_DECODERS and r_out:
                union += map_overlap(r_out[0], np.zeros_like(r_out[0]), threshold)[1]
            continue
        c_out, c_res = cand[i]
        diffs = [float(np.max(np.abs(a.astype(np.float64) - b))) if a.shape == b.shape else float("inf")
                 for a, b in zip(r_out, c_out, strict=False)]
        frame_diff = max(diffs, default=0.0)
        max_diff = max(max_diff, frame_diff)
        if decoder in BOX_DECODERS and r_res is not None and c_res is not None:
            matched += matched_boxes(r_res, c_res)
            ref_boxes += len(r_res)
            cand_boxes += len(c_res)
        if decoder in DENSE_DECODERS and r_out and c_out and r_out[0].shape == c_out[0].shape:
            n_inter, n_union = map_overlap(r_out[0], c_out[0], threshold)
            inter += n_inter
            union += n_union
        elif decoder == "classification" and r_res is not None and c_res is not None:
            agree_num += float(len(r_res) > 0 and len(c_res) > 0 and r_res[0, 0] == c_res[0, 0])
            agree_den += 1
        elif decoder not in BOX_DECODERS:
            scale = max((float(np.ptp(a)) for a in r_out), default=1.0) or 1.0
            agree_num += float(frame_diff <= 1e-4 * scale)
            agree_den += 1
    out: dict[str, Any] = {"frames": len(frames), "excluded_frames": len(set(ref) & exclude),
                           "max_abs_diff": max_diff}
    # Nothing to disagree about (no boxes, no pixels above the threshold in either) is agreement.
    box_f1 = 2 * matched / (ref_boxes + cand_boxes) if ref_boxes + cand_boxes else 1.0
    if decoder in BOX_DECODERS:
        out["precision"] = matched / cand_boxes if cand_boxes else 1.0
        out["recall"] = matched / ref_boxes if ref_boxes else 1.0
    if decoder in DENSE_DECODERS:
        agreement = inter / union if union else 1.0
        out["map_iou"] = agreement
        out["box_f1"] = box_f1
        method = f"IoU of maps thresholded at {threshold:g}"
    elif decoder in BOX_DECODERS:
        agreement = box_f1
        method = f"F1 of boxes matched at IoU >= {IOU_MATCH}"
    else:
        agreement = agree_num / agree_den if agree_den else 1.0
        method = "same top-1" if decoder == "classification" else "raw outputs within 1e-4 of range"
    out.update({"agreement": agreement, "method": method, "changes_results": agreement < floor})
    return out
