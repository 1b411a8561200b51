"""Benchmarks: each ``bench/bench_<area>.py`` prints a table and writes ``bench/results/<area>.json``."""
