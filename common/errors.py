"""Errors and exit codes, in one place: 0 done or nothing to do; 1 a failure a retry may fix;
2 usage; 3 refused: invalid or unsafe input, nothing changed."""

from __future__ import annotations

from typing import Any

EXIT_OK, EXIT_RETRY, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class CpError(Exception):
    """Base of every error the tools raise on purpose; carries its exit code."""

    exit_code = EXIT_RETRY

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  - {line}" for line in self.details)])


class RetryableError(CpError):
    """Something a later run may get past: a missing CR, an unreachable or failing apiserver."""


class UsageError(CpError):
    """The command line or its environment variables are wrong."""

    exit_code = EXIT_USAGE


class RefusedError(CpError):
    """The input is invalid or acting on it would be unsafe; nothing was changed."""

    exit_code = EXIT_REFUSED


class ApiError(RetryableError):
    """The apiserver answered a request with an error status (`body`: its Status object)."""

    def __init__(
        self, method: str, path: str, status: int, reason: str, message: str, body: dict[str, Any]
    ) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.method, self.path, self.status, self.reason = method, path, status, reason
        self.api_message, self.body = message, body


class ConnectionFailed(RetryableError):
    """No answer from the apiserver (refused, reset, timed out) within the retry budget."""


class StaleView(RetryableError):
    """What a step observed changed before it could act on it; observe and plan again."""
