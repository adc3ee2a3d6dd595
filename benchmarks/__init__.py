"""Benchmarks: one module per question, `python -m benchmarks` prints one table."""
