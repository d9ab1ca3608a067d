"""DPG-Bench: dense prompts, 4 images per prompt as a 2x2 grid, each cell asked every question.

Per cell every question is answered (score 1 only for the exact answer "yes"); then, in CSV row order,
a question with a parent (dependency != 0) currently scored 0 is set to 0; cell score = mean, image score
= mean over cells, DPG score = 100 x mean over images.

``compat="default"`` is the intended behaviour: every CSV row is used, and the L1/L2 category columns are
pooled from the same dependency-zeroed scores over all cells. ``compat="official"`` reproduces
``compute_dpg_bench.py`` (ELLA): the first CSV data row is dropped (an image whose questions depend on it
fails with KeyError and is left out), non-contiguous rows of an item keep only the last block, and the
category scores come from the LAST cell's answers before dependency zeroing.

Answers come from any Judge (yes-probability thresholded, default backend) or from any function that
returns answer strings (e.g. the official mPLUG VQA where installed).

Files: ``data.py`` (prompts, question CSV, grid), ``parse.py`` (judge answers), ``scorer.py`` (questions per
cell, dependency zeroing), ``aggregate.py`` (DPG score and categories), ``official.py`` (a folder of saved
grids as the official script scores it), ``benchmark.py`` (the protocol the pipeline runs).
"""

from evalkit.benchmarks.dpg.benchmark import DPG

__all__ = ["DPG"]
