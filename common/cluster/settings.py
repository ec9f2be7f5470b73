"""Settings the cluster access reads from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

from common.errors import UsageError


def seconds_setting(
    variable: str, default: float, environ: Mapping[str, str] | None = None
) -> float:
    """A number of seconds greater than 0 from `variable` (`default` when unset or blank);
    anything else is a usage error naming the variable and what it holds."""
    raw = (environ if environ is not None else os.environ).get(variable, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise UsageError(f"{variable}={raw!r}: a number of seconds greater than 0 is needed")
    return value
