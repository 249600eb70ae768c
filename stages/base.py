"""The one interface every stage implements.

A stage turns a frame into its next form in place (``process``) and is timed by
the runner, not by itself, so timing is uniform and a stage cannot forget it.
Inference additionally offers ``submit`` for asynchronous requests; see
``stages.inference``.
"""

from __future__ import annotations

from typing import Protocol

from vidprof.stages.frame import Frame


class Stage(Protocol):
    name: str

    def process(self, frame: Frame) -> None:
        """Do this stage's work on ``frame``; raise on failure (the frame is then counted as failed)."""
        ...

    def close(self) -> None:
        """Release resources; called once after the last frame."""
        ...
