"""A toy benchmark in one folder: what a new benchmark takes (see CONTRIBUTING.md and test_toy_plugins.py)."""

from toy_bench.benchmark import ToyBench

__all__ = ["ToyBench"]
