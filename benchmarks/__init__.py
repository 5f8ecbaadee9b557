"""Scaling benchmarks (`python -m benchmarks.scaling`); results in docs/PERFORMANCE.md."""
