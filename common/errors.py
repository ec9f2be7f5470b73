"""Errors and exit codes, in one place: 0 done or nothing to do; 1 a failure a retry may fix;
2 usage; 3 refused: invalid or unsafe input, nothing changed."""

from __future__ import annotations

from typing import Any

from common import reasons

EXIT_OK, EXIT_RETRY, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class CpError(Exception):
    """Base of every error the tools raise on purpose; carries its exit code, and the stable
    CamelCase code of why (`reason`, README "Fleet view") the record on the CR shows."""

    exit_code = EXIT_RETRY
    reason = reasons.RETRYABLE_FAILURE

    def __init__(
        self, message: str, *, details: list[str] | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  - {line}" for line in self.details)])


class RetryableError(CpError):
    """Something a later run may get past: a missing CR, an unreachable or failing apiserver."""


class UsageError(CpError):
    """The command line or its environment variables are wrong."""

    exit_code = EXIT_USAGE
    reason = reasons.INVALID_USAGE


class RefusedError(CpError):
    """The input is invalid or acting on it would be unsafe; nothing was changed."""

    exit_code = EXIT_REFUSED
    reason = reasons.REFUSED


class ApiError(RetryableError):
    """The apiserver answered a request with an error status (`body`: its Status object;
    `status_reason`: its reason, e.g. Forbidden)."""

    def __init__(
        self, method: str, path: str, status: int, reason: str, message: str, body: dict[str, Any]
    ) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.method, self.path, self.status, self.status_reason = method, path, status, reason
        self.api_message, self.body = message, body
        self.reason = _API_REASONS.get(status, reasons.APISERVER_ERROR)


# The record's reason for an apiserver's error answer, by HTTP status.
_API_REASONS = {401: reasons.UNAUTHORIZED, 403: reasons.FORBIDDEN, 409: reasons.CONFLICT}


class RejectedWrite(ApiError):
    """A write the apiserver rejects for a reason no retry changes: 422 Invalid (a field the
    object does not allow, such as data of an immutable ConfigMap), or a denial by an admission
    policy or webhook (a 403 that is not RBAC's). A person must decide: exit 3.

    `object` names it (`kind namespace/name`), `fields` the field paths the answer names,
    `policy` the admission policy or webhook that denied it (empty when none did)."""

    exit_code = EXIT_REFUSED

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        reason: str,
        message: str,
        body: dict[str, Any],
        *,
        object: str,
        fields: list[str],
        policy: str,
    ) -> None:
        super().__init__(method, path, status, reason, message, body)
        self.object, self.fields, self.policy = object, fields, policy
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, method
        )
        self.verb = verb
        if policy:
            why = f"{policy} denies it"
            remedy = (
                "An admission policy decides this, not RBAC. Change the object as the "
                "policy's message asks, or have the policy's owner exempt this write; the next "
                "run then goes on"
            )
        else:
            where = f" (field {', '.join(fields)})" if fields else ""
            why = f"{status} {reason}{where}"
            remedy = "No retry changes this answer"
        self.message = f"{object}: the apiserver refuses to {verb} it: {why}: {message}. {remedy}"


class ConnectionFailed(RetryableError):
    """No answer from the apiserver (refused, reset, timed out) within the retry budget."""

    reason = reasons.APISERVER_UNREACHABLE


class StaleView(RetryableError):
    """What a step observed changed before it could act on it; observe and plan again."""

    reason = reasons.CONFLICT
