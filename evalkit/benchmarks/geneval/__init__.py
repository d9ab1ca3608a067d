"""GenEval: protocols `geneval` (553 short prompts) and `geneval@long` (BAGEL's rewritten prompts).

4 images per prompt; Mask2Former finds objects, CLIP names colours, and the official rules
(`rules.py`) decide each image. The table has the six task accuracies and their unweighted mean.

Files: ``data.py`` (class names, metadata), ``rules.py`` (the official per-image rules), ``scorer.py``
(detector + CLIP + rules), ``aggregate.py`` (``summary_scores.py`` and the table), ``official.py`` (the rules
on recorded detections: ``evalkit score geneval --detections``), ``benchmark.py`` (the protocol the pipeline
runs).
"""

from evalkit.benchmarks.geneval.benchmark import GenEval

__all__ = ["GenEval"]
