"""Logging: one line per decision; JSON lines off a terminal (init containers), text on one."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from common.redact import scrub

_FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        line.update(
            {k: scrub(v) if isinstance(v, str) else v for k, v in _fields_of(record).items()}
        )
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        # Scrubbed last, so that no remembered credential passes in any part of the line.
        return scrub(json.dumps(line, default=str, sort_keys=False))


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = getattr(record, _FIELDS, {})
    return found


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, _FIELDS, {})
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        text = f"{record.levelname:<7} {record.name}: {record.getMessage()}{extra}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return scrub(text)


def setup(log_format: str, verbosity: int, stream: Any = None) -> str:
    """Configure the root logger once per process; `auto` picks JSON when stderr is no tty.
    Returns the format chosen (json or text)."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    # urllib3 warns per request on some setups; its own lines only add noise at -v.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # A library's warning (urllib3 on a SOCKS proxy, a server URL without a scheme) becomes a
    # log line like any other, not raw text between the JSON lines.
    logging.captureWarnings(True)
    return log_format


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: structured fields rendered as JSON keys or `k=v` pairs."""
    return {_FIELDS: {k: v for k, v in values.items() if v is not None}}
