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


# One compiled model serves every stream: these series carry the pipeline label only.
PIPELINE_WIDE = ("vidprof_infer_requests", "vidprof_startup_seconds", "vidprof_model_cache_state",
                 "vidprof_memory_bytes", "vidprof_pipeline_info", "vidprof_perf_", "vidprof_device_")


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    ids = {"pipeline": labels.pop("pipeline", "test")}
    if not name.startswith(PIPELINE_WIDE):
        ids["stream"] = labels.pop("stream", "0")
    return registry.get_sample_value(name, {**ids, **labels})
