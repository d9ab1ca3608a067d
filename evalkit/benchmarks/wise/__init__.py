"""WISE: world-knowledge prompts judged by an MLLM; categories by prompt_id range.

Protocols:
* ``wise@legacy`` (paper, BAGEL, AlphaGRPO): consistency/realism/aesthetic 0-2 per image,
  WiScore = (0.7 C + 0.2 R + 0.1 A) / 2, overall = 0.4 Cultural + 0.167 Time + 0.133 Space
  + 0.1 (Biology + Physics + Chemistry). BAGEL's tables used the unweighted mean of the 6 categories
  instead; it is reported as the separate key :data:`evalkit.benchmarks.wise.data.BAGEL_UNWEIGHTED_KEY`.
* ``wise@verified`` (WISE_Verified): one binary score, its own id ranges,
  overall = 0.4 Cultural + 0.12 x each other category.

:func:`evalkit.benchmarks.wise.official.official_calculate` reproduces the official score-file aggregation (``Calculate.py`` and
``calculate_verified.py``), including what it skips and when it refuses.

Files: ``data.py`` (prompts, id ranges, judge prompts), ``parse.py`` (judge replies), ``scorer.py`` (one judge
request per image), ``aggregate.py`` (WiScore, category means, overall), ``official.py`` (released score
files), ``benchmark.py`` (the protocol the pipeline runs).
"""

from evalkit.benchmarks.wise.benchmark import WISE

__all__ = ["WISE"]
