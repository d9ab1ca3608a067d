"""`evalkit` CLI with a fault injected into one rank's generator (tests only).

EVALKIT_TEST_FAULT=fail|hang|kill and EVALKIT_TEST_FAULT_RANK=r: on rank r the second call to the
tiny SD3 generator raises, sleeps forever, or kills its own process with SIGKILL (as the OOM killer would).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from evalkit.cli import main
from evalkit.generators.diffusers_t2i import DiffusersGenerator

FAULT = os.environ["EVALKIT_TEST_FAULT"]
ON_RANK = int(os.environ["EVALKIT_TEST_FAULT_RANK"])
real_generate = DiffusersGenerator.generate
calls = {"n": 0}


def faulty_generate(self, requests):
    calls["n"] += 1
    if calls["n"] == 2:
        if FAULT == "fail":
            raise RuntimeError("injected generator fault")
        if FAULT == "hang":
            time.sleep(3600)
        if FAULT == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
    return real_generate(self, requests)


if int(os.environ.get("RANK", "0")) == ON_RANK:
    DiffusersGenerator.generate = faulty_generate
sys.argv = ["evalkit", *sys.argv[1:]]
main()
