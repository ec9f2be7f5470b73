"""Errors and exit codes, in one place.

0 done or nothing to do; 1 a failure a retry may fix; 2 usage; 3 refused: invalid or unsafe
input, nothing changed.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RETRY = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3


class CpError(Exception):
    """Base of every error the tools raise on purpose; carries its exit code."""

    exit_code = EXIT_RETRY

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {line}" for line in self.details)


class RetryableError(CpError):
    """Something a later run may get past: a missing CR, an unreachable or failing apiserver."""

    exit_code = EXIT_RETRY


class UsageError(CpError):
    """The command line or its environment variables are wrong."""

    exit_code = EXIT_USAGE


class RefusedError(CpError):
    """The input is invalid or acting on it would be unsafe; nothing was changed."""

    exit_code = EXIT_REFUSED


class ApiError(RetryableError):
    """The apiserver answered a request with an error status."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        reason: str,
        message: str,
        body: dict[str, object] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.body = body or {}
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.api_message = message

    @property
    def causes(self) -> list[dict[str, str]]:
        """The field-level causes of a 422 Invalid answer (or a strict-validation 400)."""
        details = self.body.get("details")
        if not isinstance(details, dict):
            return []
        causes = details.get("causes")
        if not isinstance(causes, list):
            return []
        return [
            {str(k): str(v) for k, v in cause.items()}
            for cause in causes
            if isinstance(cause, dict)
        ]


class ConnectionFailed(RetryableError):
    """No answer from the apiserver (refused, reset, timed out) within the retry budget."""


class StaleView(RetryableError):
    """What a step observed changed before it could act on it; observe and plan again."""
