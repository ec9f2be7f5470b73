"""Bounded retries: which failures are worth another try, and how long to wait."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from common.errors import ApiError, StaleView
from common.logs import fields

T = TypeVar("T")

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


def replan_on_conflict(
    attempt: Callable[[], T], *, log: logging.Logger, what: str, max_attempts: int = 5
) -> T:
    """Run a whole observe -> plan -> apply again when it meets a 409 (an object moved under a
    resourceVersion/uid precondition, or was created by a concurrent run) or a StaleView,
    a bounded number of times: the next observation sees what the other writer did."""
    for number in range(1, max_attempts + 1):
        try:
            return attempt()
        except (ApiError, StaleView) as err:
            stale = isinstance(err, StaleView) or err.status == 409
            if not stale or number == max_attempts:
                raise
            log.info(
                f"{what} changed while we worked; observing and planning again",
                extra=fields(attempt=number, reason=str(err)),
            )
    raise AssertionError("unreachable")
