"""Every registered benchmark keeps the Benchmark contract (one shared check, fed the official data)."""

from __future__ import annotations

import json

import pytest

from evalkit import registry
from evalkit.benchmarks.base import Benchmark, Sample
from evalkit.errors import DataError, EvalkitError

NAMES = sorted(registry.entries("benchmarks"))


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_contract(name, data_dir):
    from evalkit.evaluator import load_benchmark

    bench = load_benchmark(name, data_dir=data_dir)
    assert isinstance(bench, Benchmark) and bench.name == name and bench.protocol.split("@")[0] == name
    assert isinstance(bench.needs_judge, bool) and bench.images_per_sample >= 1
    assert bench.columns and all(isinstance(c, str) for c in bench.columns)
    try:
        samples = bench.samples()
    except DataError as error:  # not in the shared data folder; the message names the fetch command
        assert "evalkit data fetch" in str(error)
        pytest.skip(f"{name}: {error}")
    assert samples and all(isinstance(s, Sample) and s.id and isinstance(s.prompt, str) for s in samples)
    assert len({s.id for s in samples}) == len(samples), "sample ids must be unique"
    for sample in samples[:3]:
        json.dumps(bench.request_options(sample))  # travels in run.json and sidecars
        assert isinstance(bench.derived_names(sample), list)
    json.dumps(bench.scorer_config())  # hashed into records before any scorer loads
    with pytest.raises(EvalkitError, match="no_such_option"):  # refused before any model loads
        bench.scorer_config(no_such_option=1)
