"""Observe, plan and apply again when the cluster moved under a step."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from common.errors import ApiError, StaleView
from common.logs import fields

T = TypeVar("T")


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
