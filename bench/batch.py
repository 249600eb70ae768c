"""Batching: --batch 1 vs 4 vs 8 on the sample model, end-to-end FPS and e2e p99 side by side.

    python bench/batch.py [--pairs 3] [--frames 600] [--streams 4]

Each round runs every batch size once, in alternating order, as in-process runs of STREAMS non-paced
streams of the sample clip (default placement and hint), FRAMES frames per stream. Prints each round's
figures and ``RESULT batch_<N>_vs_1 median_ratio=... pairs=[...] p99_ms=...`` (FPS ratio against batch 1,
median over rounds; the median e2e p99 beside it). Batching trades latency for throughput: on a CPU the
gain depends on the model and the ISA; measure it, don't assume it.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from bench._common import base_parser, log, machine_note, median, result_line, run_interleaved
from vidprof.pipeline.config import RunConfig
from vidprof.pipeline.runner import Runner
from vidprof.samples import assets
from vidprof.stages.inference import InferenceOptions

BATCHES = (1, 4, 8)


def run(batch: int, frames: int, streams: int) -> tuple[float, float]:
    runner = Runner(RunConfig(sources=(assets.sample_clip_path(),), copies=streams, frames=frames, loop=True,
                              inference=InferenceOptions(batch=batch), pipeline_name="bench"))
    runner.run()
    rep = runner.summary().run_report
    if rep.fault or rep.frames.failed:
        raise SystemExit(f"batch {batch}: run failed: {rep.fault or rep.first_error}")
    return rep.fps, rep.e2e.p99


def main() -> None:
    p = base_parser(__doc__.splitlines()[0], pairs=3)
    p.add_argument("--frames", type=int, default=600, help="frames per stream (default 600)")
    p.add_argument("--streams", type=int, default=4, help="non-paced streams (default 4)")
    a = p.parse_args()
    log(machine_note())
    results: dict[int, list[tuple[float, float]]] = {b: [] for b in BATCHES}
    for i in range(a.pairs):
        got = run_interleaved(i, {str(b): (lambda b=b: run(b, a.frames, a.streams)) for b in BATCHES})
        for b in BATCHES:
            results[b].append(got[str(b)])
        log(f"round {i}: " + ", ".join(f"batch {b}: {got[str(b)][0]:.1f} FPS, p99 {got[str(b)][1] * 1e3:.0f} ms"
                                         for b in BATCHES))
    for b in BATCHES:
        ratios = [fps / base[0] for (fps, _), base in zip(results[b], results[1], strict=True)]
        print(result_line(f"batch_{b}_vs_1", ratios, fps=f"{median([r[0] for r in results[b]]):.1f}",
                          p99_ms=f"{median([r[1] for r in results[b]]) * 1e3:.1f}"))


if __name__ == "__main__":
    main()
