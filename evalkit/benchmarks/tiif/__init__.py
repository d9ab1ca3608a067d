"""TIIF-Bench: yes/no questions per prompt, answered by an MLLM judge, grouped into 9 groups.

Protocols:
* ``tiif`` (default): temperature 0, the first official template, a fixed seed; dimension accuracies are
  used at full precision.
* ``tiif@official``: as released - temperature 1.0 and one of the three templates picked at random per
  request (seeded here, so a run can be repeated), dimension accuracies rounded to 4 decimals as the
  official Excel round trip does.

Released judge outputs are re-scored by :func:`evalkit.benchmarks.tiif.official.import_judgments`.

Files: ``data.py`` (dimension files, templates), ``parse.py`` (judge replies), ``scorer.py`` (one judge
request per sample), ``aggregate.py`` (official groups and table), ``official.py`` (re-scoring released judge
outputs), ``benchmark.py`` (the protocol the pipeline runs).
"""

from evalkit.benchmarks.tiif.benchmark import TIIF

__all__ = ["TIIF"]
