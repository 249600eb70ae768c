"""Device-side attribution from OpenVINO's per-node profiling counters (``PERF_COUNT``).

``get_profiling_info()`` costs 30-45 µs a call, so requests are sampled (at most one every
``min_interval`` seconds) rather than read for every frame. From each sample:

- device time = the summed ``real_time`` of executed nodes; the request's wall time minus it is
  host/runtime overhead (clamped at zero: nodes of one request may run in parallel, so the sum can
  exceed the wall time; ``device_to_wall_ratio`` > 1 shows that);
- time per node type (``Convolution``, ``Subgraph``, ``Reorder``...);
- conversions the device runs at the model's boundary: ``Reorder``/``Convert`` nodes fed by an input
  or feeding an output;
- with fused preprocessing, the nodes between the input and the first node of the original model:
  their time belongs to the preprocess stage, so fused and separate can be compared stage by stage.

Node roles come from the compiled model's runtime graph (``get_runtime_model``), whose node names are
the names profiling info reports.
"""

from __future__ import annotations

import threading
from array import array
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import openvino as ov
from prometheus_client import CollectorRegistry, Counter, Histogram

from vidprof.profiling.metrics import LATENCY_BUCKETS
from vidprof.profiling.stats import Stats

CONVERSION_TYPES = {"Reorder", "Convert"}
TOP_N = 10
MAX_NODE_TYPES = 24  # label values beyond this are folded into "other": cardinality stays bounded


def _rt(op: ov.Node, key: str) -> str:
    info = op.get_rt_info()
    return info[key].astype(str) if key in info else ""


def node_roles(runtime_model: ov.Model, original_names: set[str] | None) -> dict[str, str]:
    """Map runtime node name -> "input_conversion" | "output_conversion" | "preprocessing".

    ``original_names``: friendly names of the model's ops before preprocessing was fused in (None when
    nothing was fused). A node is preprocessing when it carries none of those names and all its inputs
    are the model input, constants or other preprocessing nodes.
    """
    roles: dict[str, str] = {}
    ops = runtime_model.get_ordered_ops()
    kind = {op.get_friendly_name(): _rt(op, "layerType") for op in ops}
    if original_names is not None:
        pre: set[str] = set()
        for op in ops:  # topological order: inputs are classified before their consumers
            name = op.get_friendly_name()
            if kind[name] in ("Input", "Const", "Output"):
                continue
            origin = {n for n in _rt(op, "originalLayersNames").split(",") if n}
            sources = [v.get_node().get_friendly_name() for v in op.input_values()]
            fed_by_input = all(kind[s] in ("Input", "Const") or s in pre for s in sources)
            if fed_by_input and not (origin & original_names):
                pre.add(name)
        roles.update({n: "preprocessing" for n in pre})
    for op in ops:
        name = op.get_friendly_name()
        if kind[name] not in CONVERSION_TYPES or name in roles:
            continue
        sources = [kind[v.get_node().get_friendly_name()] for v in op.input_values()]
        targets = [kind.get(t.get_node().get_friendly_name(), "") for o in op.outputs() for t in o.get_target_inputs()]
        if "Input" in sources:
            roles[name] = "input_conversion"
        elif "Output" in targets:
            roles[name] = "output_conversion"
    return roles


class PerfCounterSampler:
    """Samples profiling info from completed requests; thread-safe (callbacks run on several threads)."""

    def __init__(self, compiled: ov.CompiledModel, original_names: set[str] | None,
                 registry: CollectorRegistry | None, labels: dict[str, str], min_interval: float = 0.05,
                 skip_first: int = 0) -> None:
        self.roles = node_roles(compiled.get_runtime_model(), original_names)
        self.fused = original_names is not None
        self._min_interval_ns = int(min_interval * 1e9)
        self._next_ns = 0
        # The first inferences of each request pay one-off costs (lazy init, page faults: seen here as a
        # 2 s "Convolution"), which would swamp the means: they are not sampled.
        self._skip = skip_first
        self._lock = threading.Lock()
        self.device = array("d")
        self.wall = array("d")
        self.by_type: dict[str, float] = defaultdict(float)
        self.by_role: dict[str, float] = defaultdict(float)
        self._m = None
        if registry is not None:
            base = list(labels)
            self._labels = labels
            self._m = {
                "device": Histogram("vidprof_infer_device_seconds",
                                    "Summed device time of a sampled infer request (PERF_COUNT).",
                                    base, registry=registry, buckets=LATENCY_BUCKETS).labels(**labels),
                "samples": Counter("vidprof_perf_samples", "Infer requests whose profiling info was read.",
                                   base, registry=registry).labels(**labels),
                "node": Counter("vidprof_device_node_seconds", "Device time by node type over sampled requests.",
                                [*base, "node_type"], registry=registry),
                "role": Counter("vidprof_device_boundary_seconds",
                                "Device time of input/output conversions and fused preprocessing nodes, "
                                "over sampled requests.", [*base, "part"], registry=registry),
            }
            self._node_children: dict[str, Any] = {}

    def due(self, now_ns: int) -> bool:
        """Cheap check on the hot path; the first request is always sampled."""
        return now_ns >= self._next_ns

    def sample(self, request: ov.InferRequest, wall_seconds: float, now_ns: int) -> None:
        with self._lock:
            if self._skip > 0:
                self._skip -= 1
                return
            if now_ns < self._next_ns:
                return
            self._next_ns = now_ns + self._min_interval_ns
        self.add(request.get_profiling_info(), wall_seconds)

    def add(self, infos: Iterable[Any], wall_seconds: float) -> None:
        total = 0.0
        by_type: dict[str, float] = defaultdict(float)
        by_role: dict[str, float] = defaultdict(float)
        for p in infos:
            if p.status != ov.ProfilingInfo.Status.EXECUTED:
                continue
            sec = p.real_time.total_seconds()
            total += sec
            by_type[p.node_type] += sec
            role = self.roles.get(p.node_name)
            if role is not None:
                by_role[role] += sec
        with self._lock:
            self.device.append(total)
            self.wall.append(wall_seconds)
            for t, s in by_type.items():
                self.by_type[t] += s
            for r, s in by_role.items():
                self.by_role[r] += s
            if self._m is not None:
                self._m["device"].observe(total)
                self._m["samples"].inc()
                for t, s in by_type.items():
                    self._node_child(t).inc(s)
                for r, s in by_role.items():
                    self._m["role"].labels(**self._labels, part=r).inc(s)

    def _node_child(self, node_type: str) -> Any:
        child = self._node_children.get(node_type)
        if child is None:
            label = node_type if len(self._node_children) < MAX_NODE_TYPES else "other"
            child = self._m["node"].labels(**self._labels, node_type=label)  # type: ignore[index]
            self._node_children[node_type] = child
        return child

    def report(self) -> dict[str, Any]:
        with self._lock:
            n = len(self.device)
            per = (lambda s: s / n) if n else (lambda s: 0.0)
            ranked = sorted(self.by_type.items(), key=lambda kv: -kv[1])
            node_types = {t: per(s) for t, s in ranked[:TOP_N]}
            if len(ranked) > TOP_N:
                node_types["other"] = per(sum(s for _, s in ranked[TOP_N:]))
            # Summed node times can exceed the request's wall time: the CPU plugin runs independent
            # nodes of one request in parallel. The overhead is then clamped at zero and the ratio
            # (> 1 means overlap) says so, rather than reporting a negative cost.
            overhead = [max(0.0, w - d) for w, d in zip(self.wall, self.device, strict=True)]
            ratio = [d / w for w, d in zip(self.wall, self.device, strict=True) if w > 0]
            return {
                "sampled_requests": n,
                "device_seconds": Stats.of(self.device).to_dict(),
                "request_wall_seconds": Stats.of(self.wall).to_dict(),
                "host_overhead_seconds": Stats.of(overhead).to_dict(),
                "device_to_wall_ratio": Stats.of(ratio).to_dict(),
                "node_types": node_types,
                "conversions": {"input": per(self.by_role.get("input_conversion", 0.0)),
                                "output": per(self.by_role.get("output_conversion", 0.0))},
                "preprocess_nodes_seconds": per(self.by_role.get("preprocessing", 0.0)) if self.fused else None,
            }
