"""Run the real pipeline in-process and read its figures back."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner


def run_pipeline(**kw: Any) -> tuple[Runner, dict[str, Any], CollectorRegistry]:
    registry = CollectorRegistry()
    runner = Runner(RunConfig(**kw), registry)
    runner.run()
    return runner, runner.summary().report, registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"pipeline": labels.pop("pipeline", "test"),
                                            "stream": labels.pop("stream", "0"), **labels})
