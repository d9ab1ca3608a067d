"""Benchmark runners: data loading, requests, per-sample scoring and official aggregation."""
