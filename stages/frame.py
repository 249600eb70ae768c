"""The unit of work that flows through the stages, carrying its own timing marks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidprof.profiling.marks import Marks
from vidprof.profiling.recorder import Transfer


@dataclass
class Frame:
    index: int
    stream: int = 0  # the index of the stream it belongs to: routes it back after shared inference
    image: np.ndarray | None = None  # decoded BGR u8, HxWx3
    tensor: np.ndarray | None = None  # the model's input, as the infer request takes it
    outputs: list[np.ndarray] = field(default_factory=list)
    result: Any = None
    marks: Marks = field(default_factory=Marks)
    transfer: Transfer = field(default_factory=Transfer)
    error: str | None = None  # set when a stage failed on this frame; later stages skip it
    reason: str | None = None  # why it failed, from profiling.recorder.FAILURE_REASONS
