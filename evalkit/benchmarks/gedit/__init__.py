"""GEdit-Bench-EN: instruction-based editing judged with VIEScore on any Judge.

Per sample the judge is asked twice: SC on [source, edited] (editing success, over-editing) and PQ on the
edited image (naturalness, artifacts); the edited image is resized to the source size first.
SC = min of the SC scores, PQ = min of the PQ scores, O = sqrt(SC x PQ). Per task type the means of SC,
PQ and O; overall = unweighted mean over the 11 task types (so O is not sqrt(mean SC x mean PQ)).

Reply parsing follows VIEScore's ``mllm_output_to_dict``, and an unparseable first answer re-sends both
requests once, as the official loop does. Where the official code then substitutes a random integer
(``give_up_parsing``), or keeps re-asking forever, evalkit records a failure instead; a second answer
that parses normally (a bare "[a, b]") is used and flagged ``official_would_randomize``.

Files: ``data.py`` (local copy, Hub export, judge prompts), ``parse.py`` (VIEScore replies, shared with the
viescore reward), ``scorer.py`` (SC + PQ per edited image), ``aggregate.py`` (per-task and overall means),
``official.py`` (the official per-task CSVs), ``benchmark.py`` (the protocol the pipeline runs).
"""

from evalkit.benchmarks.gedit.benchmark import GEdit

__all__ = ["GEdit"]
