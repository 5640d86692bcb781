"""The command line: ``hetbench`` / ``python -m benchmarks``."""
