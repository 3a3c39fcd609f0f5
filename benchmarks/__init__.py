"""Benchmark scripts, each run as ``python benchmarks/<name>.py``; tests import their helpers."""
