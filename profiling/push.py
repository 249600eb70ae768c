"""Getting the metrics of short runs and batch jobs out: Pushgateway pushes and node_exporter text files."""

from __future__ import annotations

import sys
import threading

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from vidprof.profiling.errors import RunError


class Pusher:
    """Pushes the registry to a Pushgateway every ``interval`` seconds while running, and once at the end.

    Grouped by job and pipeline, so the final push of a run replaces its own earlier pushes and no one
    else's. A failed push during the run is reported once and retried at the next interval; a failed
    final push is an error (the run's figures would be lost).
    """

    def __init__(self, url: str, registry: CollectorRegistry, pipeline: str, job: str = "vidprof",
                 interval: float = 10.0, extra_grouping: dict[str, str] | None = None) -> None:
        self.url = url
        self._registry = registry
        self._job = job
        self._grouping = {"pipeline": pipeline, **(extra_grouping or {})}
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def push(self) -> None:
        try:
            push_to_gateway(self.url, job=self._job, registry=self._registry, grouping_key=self._grouping,
                            timeout=5)
        except Exception as e:
            raise RunError(f"--pushgateway {self.url}: push failed ({e}); expected a reachable Prometheus "
                           "Pushgateway URL such as http://127.0.0.1:9091") from e

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.push()
            except RunError as e:
                if not self._warned:
                    print(f"vidprof: warning: {e}", file=sys.stderr)
                    self._warned = True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="vidprof-push", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """Stop the interval pushes and push the final values."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.push()


def write_textfile(path: str, registry: CollectorRegistry) -> None:
    """The final exposition for node_exporter's textfile collector (written atomically by prometheus_client)."""
    try:
        write_to_textfile(path, registry)
    except OSError as e:
        raise RunError(f"--metrics-textfile {path}: cannot write ({e.strerror or e}); expected a writable path, "
                       "e.g. in node_exporter's --collector.textfile.directory") from e


def push_tune_results(url: str, doc: dict, pipeline: str) -> None:
    """Each configuration of a sweep as its own group (job, pipeline, config), so sweeps compare in Grafana.

    The ``config`` label takes one value per grid configuration: bounded by the grid the user gave.
    """
    for r in doc["results"]:
        if r["status"] != "ok":
            continue
        config = ",".join(f"{k}={v}" for k, v in r["config"].items()) or "defaults"
        if r["reference"]:
            config = "reference:" + config
        registry = CollectorRegistry()
        labels = ["pipeline", "config"]
        ids = {"pipeline": pipeline, "config": config}
        Gauge("vidprof_tune_fps", "End-to-end FPS (median of repeats).", labels, registry=registry).labels(
            **ids).set(r["fps"])
        if r["model_only_fps"] is not None:
            Gauge("vidprof_tune_model_only_fps", "Model alone on a pre-made input.", labels,
                  registry=registry).labels(**ids).set(r["model_only_fps"])
        e2e = Gauge("vidprof_tune_e2e_latency_seconds", "End-to-end latency quantile (median of repeats).",
                    [*labels, "quantile"], registry=registry)
        e2e.labels(**ids, quantile="0.5").set(r["e2e"]["p50"])
        e2e.labels(**ids, quantile="0.99").set(r["e2e"]["p99"])
        if r["peak_rss_bytes"] is not None:
            Gauge("vidprof_tune_peak_rss_bytes", "Peak resident memory of the run.", labels,
                  registry=registry).labels(**ids).set(r["peak_rss_bytes"])
        if r["accuracy"] is not None:
            Gauge("vidprof_tune_agreement_ratio", "Agreement of results with the reference configuration.",
                  labels, registry=registry).labels(**ids).set(r["accuracy"]["agreement"])
        try:
            push_to_gateway(url, job="vidprof_tune", registry=registry, grouping_key=ids, timeout=5)
        except Exception as e:
            raise RunError(f"--pushgateway {url}: push failed ({e}); expected a reachable Prometheus "
                           "Pushgateway URL such as http://127.0.0.1:9091") from e
