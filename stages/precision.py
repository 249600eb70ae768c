"""The precision a compiled model really computes in, read from the device's own execution graph.

``INFERENCE_PRECISION_HINT`` says what the device does with floating-point layers (f32, or bf16/f16 where
the CPU has them); it says nothing of an INT8 model, whose quantised layers run in i8/u8 whatever the
hint. The execution graph (``get_runtime_model()``) tells each layer's runtime precision, so the figure
shown beside an INT8 variant is what ran, not what was asked for.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

# The layers that carry the arithmetic: their precision is the model's, the rest (reorders, activations
# fused into them, ...) only follow.
COMPUTE_LAYERS = frozenset({"Convolution", "GroupConvolution", "Deconvolution", "MatMul", "FullyConnected",
                            "GroupDeconvolution"})
_INT8 = frozenset({"i8", "u8"})


def compute_precisions(compiled: Any) -> dict[str, int]:
    """How many compute layers run in each precision ("i8": 38, "bf16": 14, ...); {} when the device does
    not say (a device without an execution graph, or without runtime precisions in it)."""
    try:
        graph = compiled.get_runtime_model()
    except (RuntimeError, AttributeError):
        return {}
    counts: Counter[str] = Counter()
    for op in graph.get_ops():
        info = op.get_rt_info()
        if "layerType" not in info or "runtimePrecision" not in info:
            continue
        if str(info["layerType"].value) in COMPUTE_LAYERS:
            counts[str(info["runtimePrecision"].value).lower()] += 1
    return dict(counts)


def precision_used(counts: dict[str, int], hint: str | None) -> str | None:
    """One word for the table: the hint's precision for a float model; "int8+bf16" when some compute layers
    run quantised and the rest in bf16 (the quantised share in the counts says how much)."""
    if not counts:
        return hint
    if not _INT8 & set(counts):
        return hint
    rest = sorted(p for p in counts if p not in _INT8)
    return "int8" + "".join(f"+{p}" for p in rest)
