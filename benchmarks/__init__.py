"""Benchmarks of this repository: a thin layer over :mod:`jarvis_trio.bench` (see __main__)."""
