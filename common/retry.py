"""Bounded retries: which failures are worth another try, and how long to wait."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

# 429 comes from API Priority and Fairness before the request is processed; the 5xx are the
# apiserver's or a proxy's transient failures.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class RetryBudget:
    """Exponential backoff with jitter inside a total deadline, so a retry loop never hangs."""

    total_seconds: float = 30.0
    first_delay: float = 0.1
    max_delay: float = 4.0
    _deadline: float = field(init=False)
    _attempt: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.total_seconds

    def remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """Seconds to sleep before the next try, or None when the budget is spent."""
        self._attempt += 1
        if retry_after is not None:
            delay = retry_after
        else:
            backoff = min(self.max_delay, self.first_delay * 2 ** (self._attempt - 1))
            delay = backoff * (0.5 + random.random() / 2)
        if delay >= self.remaining():
            return None
        return delay


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the apiserver sends delta-seconds, never an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
