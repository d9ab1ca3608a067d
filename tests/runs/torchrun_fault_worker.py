"""`evalkit` CLI with a fault injected into one rank's generator or GenEval scorer (tests only).

EVALKIT_TEST_FAULT=fail|hang|kill and EVALKIT_TEST_FAULT_RANK=r: on rank r the second call to the
tiny SD3 generator (or, with EVALKIT_TEST_FAULT_AT=score, to the GenEval scorer) raises, sleeps forever,
or kills its own process with SIGKILL (as the OOM killer would).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from evalkit.benchmarks.geneval.scorer import GenEvalScorer
from evalkit.cli import main
from evalkit.generators.diffusers_t2i import DiffusersGenerator

FAULT = os.environ["EVALKIT_TEST_FAULT"]
ON_RANK = int(os.environ["EVALKIT_TEST_FAULT_RANK"])
AT = os.environ.get("EVALKIT_TEST_FAULT_AT", "generate")
owner, method = (GenEvalScorer, "score_images") if AT == "score" else (DiffusersGenerator, "generate")
real = getattr(owner, method)
calls = {"n": 0}


def faulty(self, *args):
    calls["n"] += 1
    if calls["n"] == 2:
        if FAULT == "fail":
            raise RuntimeError(f"injected {'scorer' if AT == 'score' else 'generator'} fault")
        if FAULT == "hang":
            time.sleep(3600)
        if FAULT == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args)


if int(os.environ.get("RANK", "0")) == ON_RANK:
    setattr(owner, method, faulty)
sys.argv = ["evalkit", *sys.argv[1:]]
main()
