"""How many requests an HTTP judge keeps in flight: a window that adapts to the server (AIMD).

A fixed limit is either too low for a vLLM/SGLang server that batches hundreds of requests, or too high for
a rate-limited endpoint, which then answers 429 until retries run out. The window works like TCP's
congestion control: it starts at `START` (the old fixed limit) or the maximum if lower, doubles per window
of successes until the first overload (slow start), then grows by one request per window of successes;
an overload reply (429 or 503) halves it. A burst of overload replies to requests sent before the last
decrease halves it only once, so the window settles just under what the server accepts instead of
collapsing to the minimum. A Retry-After holds back every new request, not only the one that got it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

START = 8  # the fixed limit before the window adapted: a server that took 8 then is not hit harder at first


@dataclass(frozen=True)
class Ticket:
    """One admitted request: the window generation it was sent in (see `AdaptiveLimit.release`)."""

    epoch: int


class AdaptiveLimit:
    """An AIMD window on in-flight requests, shared by every thread of one judge."""

    def __init__(
        self,
        maximum: int,
        *,
        minimum: int = 1,
        adaptive: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        if maximum < 1 or not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= min_concurrency ({minimum}) <= concurrency ({maximum})")
        self.maximum, self.minimum, self.adaptive = maximum, minimum, adaptive
        self.limit = float(min(maximum, max(minimum, START)) if adaptive else maximum)
        self.threshold = math.inf  # slow start until the first overload
        self.in_flight = 0
        self.peak_in_flight = 0
        self.overloads = 0
        self.decreases = 0
        self._epoch = 0
        self._resume_at = 0.0
        self._clock = clock
        self._cond = threading.Condition()

    @property
    def window(self) -> int:
        """Requests allowed in flight now."""
        return max(self.minimum, min(self.maximum, int(self.limit)))

    def acquire(self) -> Ticket:
        """Wait for a free slot (and for any Retry-After pause to end)."""
        with self._cond:
            while True:
                wait = self._resume_at - self._clock()
                if wait > 0:
                    self._cond.wait(wait)
                elif self.in_flight >= self.window:
                    self._cond.wait()
                else:
                    break
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return Ticket(self._epoch)

    def release(self, ticket: Ticket, outcome: str, retry_after: float | None = None) -> None:
        """`outcome`: "ok" (grow), "overload" (429/503: halve, pause for `retry_after`), "other" (neither)."""
        with self._cond:
            self.in_flight -= 1
            if outcome == "ok" and self.adaptive:
                grow = 1.0 if self.limit < self.threshold else 1.0 / self.limit
                self.limit = min(float(self.maximum), self.limit + grow)
            elif outcome == "overload":
                self.overloads += 1
                if retry_after is not None and retry_after > 0:
                    self._resume_at = max(self._resume_at, self._clock() + retry_after)
                if self.adaptive and ticket.epoch == self._epoch:
                    # sent after the last decrease: the current window is too large
                    self.limit = max(float(self.minimum), self.limit / 2)
                    self.threshold = self.limit
                    self._epoch += 1
                    self.decreases += 1
            self._cond.notify_all()

    def state(self) -> dict[str, float | int]:
        with self._cond:
            return {
                "window": self.window,
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                "overloads": self.overloads,
                "decreases": self.decreases,
            }
