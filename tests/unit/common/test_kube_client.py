"""Pure units: the client's retry rules, with a scripted transport (no network)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from common.cluster.client import Kube
from common.cluster.kubeconfig import Connection
from common.cluster.transport import Response
from common.errors import ApiError, ConnectionFailed

Step = Callable[[], Response]


class ScriptedTransport:
    def __init__(self, *steps: Response | Exception) -> None:
        self.steps = list(steps)
        self.calls: list[str] = []

    def __call__(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
    ) -> Response:
        self.calls.append(f"{method} {url}")
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def ok(body: dict[str, object] | None = None) -> Response:
    return Response(200, {}, json.dumps(body or {"kind": "Thing"}).encode())


def status(code: int, headers: dict[str, str] | None = None) -> Response:
    reason = "NotFound" if code == 404 else "Reason"
    body = {"kind": "Status", "code": code, "reason": reason, "message": f"said {code}"}
    return Response(code, headers or {}, json.dumps(body).encode())


def client(transport: ScriptedTransport, seconds: float = 5.0) -> Kube:
    return Kube(
        Connection(server="https://k", source="test"), transport=transport, retry_seconds=seconds
    )


class NewConnectionError(Exception):
    """Named like urllib3's: the request never left this machine."""


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_reads_are_retried_on_transient_statuses(code: int) -> None:
    transport = ScriptedTransport(status(code, {"retry-after": "0"}), ok())
    assert client(transport).request("GET", "/api/v1/x") == {"kind": "Thing"}
    assert len(transport.calls) == 2


def test_reads_are_retried_after_a_connection_reset() -> None:
    transport = ScriptedTransport(ConnectionResetError("reset"), ok())
    assert client(transport).request("GET", "/x") == {"kind": "Thing"}


def test_a_write_without_a_precondition_is_not_repeated_after_a_500() -> None:
    transport = ScriptedTransport(status(500), ok())
    with pytest.raises(ApiError) as caught:
        client(transport).request("POST", "/x", body={})
    assert caught.value.status == 500
    assert len(transport.calls) == 1


def test_any_write_is_repeated_after_a_429_because_it_was_never_processed() -> None:
    transport = ScriptedTransport(status(429, {"retry-after": "0"}), ok())
    client(transport).request("POST", "/x", body={})
    assert len(transport.calls) == 2


def test_a_write_that_never_reached_the_server_is_repeated() -> None:
    transport = ScriptedTransport(NewConnectionError("refused"), ok())
    client(transport).request("POST", "/x", body={})
    assert len(transport.calls) == 2


def test_a_safe_write_is_repeated_after_a_503() -> None:
    transport = ScriptedTransport(status(503), ok())
    client(transport).request("PATCH", "/x", body={}, retry_safe=True)
    assert len(transport.calls) == 2


def test_client_errors_are_not_retried() -> None:
    transport = ScriptedTransport(status(403), ok())
    with pytest.raises(ApiError) as caught:
        client(transport).request("GET", "/apis/x")
    assert caught.value.status == 403
    assert "GET /apis/x" in str(caught.value)


def test_a_persistent_failure_ends_within_the_budget_naming_the_request() -> None:
    transport = ScriptedTransport(*[ConnectionResetError("reset")] * 1000)
    with pytest.raises(ConnectionFailed, match="GET /api/v1/namespaces"):
        client(transport, seconds=0.5).request("GET", "/api/v1/namespaces")


def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    transport = ScriptedTransport(status(429, {"retry-after": "60"}), ok())
    with pytest.raises(ApiError) as caught:
        client(transport, seconds=1).request("GET", "/x")
    assert caught.value.status == 429


def test_get_returns_none_for_404_and_delete_false() -> None:
    transport = ScriptedTransport(status(404), status(404))
    kube = client(transport)
    assert kube.get("/x") is None
    assert kube.delete("/x") is False


def test_list_follows_continue_tokens() -> None:
    transport = ScriptedTransport(
        ok({"items": [{"n": 1}, {"n": 2}], "metadata": {"continue": "abc"}}),
        ok({"items": [{"n": 3}], "metadata": {}}),
    )
    items = client(transport).list("/api/v1/configmaps", page_size=2)
    assert [item["n"] for item in items] == [1, 2, 3]
    assert "continue=abc" in transport.calls[1]
    assert "limit=2" in transport.calls[0]


def test_a_certificate_that_does_not_verify_ends_at_once_naming_the_cause() -> None:
    from common.cluster.transport import TlsVerifyFailed

    transport = ScriptedTransport(TlsVerifyFailed("CERTIFICATE_VERIFY_FAILED"), ok())
    with pytest.raises(ConnectionFailed, match="does not verify") as caught:
        client(transport).request("GET", "/x")
    assert caught.value.exit_code == 1
    assert len(transport.calls) == 1


def test_a_refused_connection_is_retried_with_a_line_per_attempt_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from urllib3.exceptions import NewConnectionError as Urllib3NewConnectionError

    refused = Urllib3NewConnectionError(None, "[Errno 111] Connection refused")  # type: ignore[arg-type]
    transport = ScriptedTransport(*[refused] * 1000)
    with pytest.raises(ConnectionFailed, match=r"POST /x: .*connection refused"):
        client(transport, seconds=0.5).request("POST", "/x", body={})
    attempts = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert len(attempts) >= 2
    assert all("connection refused" in r.getMessage() for r in attempts)


def test_an_unknown_host_is_named() -> None:
    from urllib3.exceptions import NameResolutionError

    unknown = NameResolutionError("nowhere.invalid", None, OSError("Name or service not known"))  # type: ignore[arg-type]
    transport = ScriptedTransport(*[unknown] * 1000)
    with pytest.raises(ConnectionFailed, match="unknown host"):
        client(transport, seconds=0.3).request("GET", "/x")
