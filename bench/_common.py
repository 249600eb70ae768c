"""Shared helpers for the bench scripts: interleaving, medians and the RESULT line.

Every script compares A with B on a noisy machine (drift up to 1.35x between minutes), so the
pattern is always the same: run A and B back to back, N times, take the ratio of each pair and
quote the median of the ratios. Within each pair the order alternates (A B, then B A, ...):
with a fixed order a steady drift during the run would bias every pair the same way.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

T = TypeVar("T")


def base_parser(description: str, pairs: int = 5) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--pairs", type=int, default=pairs, help=f"interleaved A/B pairs (default {pairs})")
    return p


def ordered(pair_index: int, items: Sequence[T]) -> list[T]:
    """The items in order for even pairs, reversed for odd ones (A B, B A, A B, ...)."""
    return list(items) if pair_index % 2 == 0 else list(reversed(items))


def run_interleaved(pair_index: int, runs: dict[str, Callable[[], T]]) -> dict[str, T]:
    """Run each named measurement once, in the alternating order; collect garbage between runs.

    The gc between runs frees the previous run's compiled model and infer requests, so its
    OpenVINO threads are gone before the next run starts.
    """
    out: dict[str, T] = {}
    for name in ordered(pair_index, list(runs)):
        gc.collect()
        out[name] = runs[name]()
    gc.collect()
    return out


def run_mirrored(pair_index: int, runs: dict[str, Callable[[], T]]) -> dict[str, list[T]]:
    """Each measurement twice, in a mirrored order (A B B A, then B A A B for the next pair, ...).

    The machines here change speed by 10-30 % within seconds (a bare OpenVINO loop measured every 0.5 s for
    40 s ranged 298-569 FPS). Over one A B B A both sides see the same mean of a steady drift, so a pair's
    ratio (mean of A's runs / mean of B's) no longer swings with the order; shorter runs keep the pair
    inside one phase of the machine."""
    names = ordered(pair_index, list(runs))
    out: dict[str, list[T]] = {name: [] for name in names}
    for name in [*names, *reversed(names)]:
        gc.collect()
        out[name].append(runs[name]())
    gc.collect()
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(values: Sequence[float], digits: int = 3) -> str:
    return "[" + ", ".join(f"{v:.{digits}f}" for v in values) + "]"


def result_line(name: str, ratios: Sequence[float], **extra: object) -> str:
    """``RESULT <name> median_ratio=... pairs=[...] key=value ...``: one line to quote."""
    parts = [f"RESULT {name}", f"median_ratio={median(ratios):.3f}", f"pairs={fmt(ratios)}"]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return " ".join(parts)


def machine_note() -> str:
    """Cores and load average: other jobs on the same cores are the main source of noise here."""
    try:
        load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return f"machine: cores={os.cpu_count()} loadavg(1/5/15 min)={load}"


def log(msg: str) -> None:
    """Progress on stderr so stdout holds the figures only."""
    print(msg, file=sys.stderr, flush=True)
