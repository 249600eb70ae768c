"""Measuring: clocks, per-frame marks, Prometheus metrics, summaries and reports."""
