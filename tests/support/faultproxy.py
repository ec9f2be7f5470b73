"""A TLS-terminating fault proxy in front of the real kube-apiserver, for reliability tests.

The tools connect to the proxy with an ordinary kubeconfig (see `FaultProxy.kubeconfig`); the
proxy forwards every request to the apiserver with the admin client certificate and can, for
requests matching a `Rule`, answer with an error status instead, reset the connection, answer
late, or kill the calling tool right after the request reached the apiserver. Every request
is recorded, so a test can enumerate the writes a run sent and count which ones took effect.
The product code is untouched: this sits on the network path only.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import signal
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.support.servers import BackgroundServer, ThreadedServer

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REVIEWS = "/apis/authorization.k8s.io/"
# Hop-by-hop headers, and those the proxy sets itself.
_DROPPED_REQUEST_HEADERS = frozenset(
    {"host", "authorization", "connection", "keep-alive", "content-length", "transfer-encoding"}
)
_DROPPED_RESPONSE_HEADERS = frozenset(
    {"connection", "keep-alive", "content-length", "transfer-encoding"}
)


@dataclass(frozen=True)
class Action:
    """What the proxy does with a matching request.

    kind:
      pass      forward and relay the answer;
      respond   answer `status` (with `retry_after`) without forwarding;
      reset     reset the connection without forwarding (the apiserver never sees it);
      forward-reset  forward, then reset the connection (the apiserver acted, no answer);
      delay     forward, then hold the answer `seconds` before relaying it;
      kill      forward, then SIGKILL the registered tool process, then reset;
      hook      call `hook` first, then forward (a concurrent writer, deterministically timed).
    """

    kind: str
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    hook: Callable[[], None] | None = None

    @property
    def label(self) -> str:
        if self.kind == "respond":
            return f"{self.status}" + (
                f" Retry-After {self.retry_after:g}" if self.retry_after else ""
            )
        if self.kind == "delay":
            return f"delay {self.seconds:g}s"
        return self.kind


PASS = Action("pass")


def respond(status: int, retry_after: float | None = None) -> Action:
    return Action("respond", status=status, retry_after=retry_after)


def delay(seconds: float) -> Action:
    return Action("delay", seconds=seconds)


RESET = Action("reset")
FORWARD_RESET = Action("forward-reset")
KILL = Action("kill")


def hook(callback: Callable[[], None]) -> Action:
    return Action("hook", hook=callback)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    user_agent: str

    @property
    def dry_run(self) -> bool:
        return "All" in self.query.get("dryRun", [])

    @property
    def mutating(self) -> bool:
        # Access reviews are POSTed but only ask a question; they store nothing.
        return self.method in MUTATING_METHODS and not self.path.startswith(REVIEWS)

    @property
    def writes(self) -> bool:
        """A request that changes state when the apiserver accepts it (not a dry run)."""
        return self.mutating and not self.dry_run

    @property
    def key(self) -> tuple[str, str, bool]:
        return (self.method, self.path, self.dry_run)

    def describe(self) -> str:
        return f"{self.method} {self.path}" + (" (dry run)" if self.dry_run else "")


@dataclass
class Rule:
    """Matches requests by method, path (a full-match regex) and dry-run-ness; fires from the
    `occurrence`-th match on, `times` times (None: every time after that)."""

    action: Action
    method: str | None = None
    path: str | None = None
    dry_run: bool | None = None
    occurrence: int = 1
    times: int | None = 1
    seen: int = 0
    fired: int = 0

    def matches(self, request: Request) -> bool:
        return (
            (self.method is None or self.method == request.method)
            and (self.path is None or re.fullmatch(self.path, request.path) is not None)
            and (self.dry_run is None or self.dry_run == request.dry_run)
        )

    @classmethod
    def exactly(
        cls, key: tuple[str, str, bool], occurrence: int, action: Action, times: int | None = 1
    ) -> Rule:
        method, path, dry_run = key
        return cls(action, method, re.escape(path), dry_run, occurrence, times)


@dataclass(frozen=True)
class Record:
    """One request the proxy received, what it did, and what the apiserver answered."""

    request: Request
    action: str
    forwarded: bool
    upstream_status: int | None

    @property
    def took_effect(self) -> bool:
        """A write the apiserver accepted (a 2xx answer to a non-dry-run write)."""
        return (
            self.request.writes
            and self.upstream_status is not None
            and 200 <= self.upstream_status < 300
        )


@dataclass
class _Upstream:
    host: str
    port: int
    context: ssl.SSLContext


class _UpstreamConnection:
    """One keep-alive connection to the apiserver per client connection, opened lazily."""

    def __init__(self, upstream: _Upstream) -> None:
        self._upstream = upstream
        self._connection: http.client.HTTPSConnection | None = None

    def send(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        reused = self._connection is not None
        try:
            return self._send_once(method, target, headers, body)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            if not reused:
                raise
            # The apiserver closed an idle keep-alive connection before reading the request,
            # so the request never reached it: sending it again on a new connection is safe.
            return self._send_once(method, target, headers, body)

    def _send_once(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if self._connection is None:
            upstream = self._upstream
            self._connection = http.client.HTTPSConnection(
                upstream.host, upstream.port, context=upstream.context, timeout=60
            )
        self._connection.request(method, target, body=body, headers=headers)
        answer = self._connection.getresponse()
        data = answer.read()
        if answer.will_close:
            self.close()
        return answer.status, answer.getheaders(), data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _TlsServer(ThreadedServer):
    owner: FaultProxy

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        wrapped = self.owner._serving.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        # Handshake errors and clients that went away are normal here (resets, kills).
        with contextlib.suppress(OSError, ssl.SSLError):
            super().handle()

    def setup(self) -> None:
        super().setup()
        self._upstream_connection = _UpstreamConnection(self.server.owner._upstream)

    def finish(self) -> None:
        self._upstream_connection.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            super().finish()

    def _serve(self) -> None:
        proxy = self.server.owner
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            user_agent=self.headers.get("User-Agent", ""),
        )
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        action = proxy._decide(request)

        if action.kind == "respond":
            proxy._record(Record(request, action.label, False, None))
            self._send_status(action.status, action.retry_after)
            return
        if action.kind == "reset":
            proxy._record(Record(request, action.label, False, None))
            self._reset()
            return
        if action.kind == "hook" and action.hook is not None:
            action.hook()

        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in _DROPPED_REQUEST_HEADERS
        }
        if body is not None:
            headers["Content-Length"] = str(len(body))
        status, response_headers, data = proxy._forward(
            self._upstream_connection, self.command, self.path, headers, body
        )
        proxy._record(Record(request, action.label, True, status))

        if action.kind == "forward-reset":
            self._reset()
            return
        if action.kind == "kill":
            proxy._kill_victim(request)
            self._reset()
            return
        if action.kind == "delay":
            time.sleep(action.seconds)
        self.send_response(status)
        for name, value in response_headers:
            if name.lower() not in _DROPPED_RESPONSE_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def _send_status(self, status: int, retry_after: float | None) -> None:
        reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}.get(
            status, "InternalError"
        )
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"injected by the fault proxy: {status}",
                "reason": reason,
                "code": status,
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if retry_after is not None:
            self.send_header("Retry-After", f"{retry_after:g}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _reset(self) -> None:
        """Drop the connection with a TCP RST rather than an orderly close."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.close()


def occurrences(records: list[Record]) -> list[tuple[tuple[str, str, bool], int, Record]]:
    """Each record with its key and which occurrence of that key it was (1-based)."""
    counts: dict[tuple[str, str, bool], int] = {}
    found = []
    for record in records:
        key = record.request.key
        counts[key] = counts.get(key, 0) + 1
        found.append((key, counts[key], record))
    return found


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _dead(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


class FaultProxy(BackgroundServer):
    """Start with `with FaultProxy(admin_kubeconfig, folder) as proxy:`."""

    handler = _Handler
    server_class = _TlsServer

    def __init__(self, admin_kubeconfig: Path, folder: Path) -> None:
        super().__init__()
        config = yaml.safe_load(admin_kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        ca_file = cluster["certificate-authority"]
        pki = Path(ca_file).parent
        self._ca_file = ca_file
        upstream = urlsplit(cluster["server"])
        context = ssl.create_default_context(cafile=ca_file)
        context.load_cert_chain(user["client-certificate"], user["client-key"])
        self._upstream = _Upstream(upstream.hostname or "127.0.0.1", upstream.port or 443, context)
        # The apiserver's own serving certificate (SAN 127.0.0.1), so clients trust the proxy
        # with the control plane's CA.
        self._serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._serving.load_cert_chain(str(pki / "serving.crt"), str(pki / "serving.key"))
        self.folder = folder
        self.rules: list[Rule] = []
        self.records: list[Record] = []
        self._victim: int | None = None
        self.killed: list[Request] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        super().start()
        self._write_kubeconfig()

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "proxy-kubeconfig"

    def _write_kubeconfig(self) -> None:
        # The proxy authenticates upstream itself; the token only proves the tools send one.
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "proxy",
                            "cluster": {
                                "server": f"https://127.0.0.1:{self.port}",
                                "certificate-authority": self._ca_file,
                            },
                        }
                    ],
                    "users": [{"name": "proxy", "user": {"token": "fault-proxy-client"}}],
                    "contexts": [
                        {"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}
                    ],
                    "current-context": "proxy",
                }
            )
        )

    # -- configuration ---------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self) -> None:
        """Forget rules, records and the registered process."""
        with self._lock:
            self.rules.clear()
            self.records.clear()
            self.killed.clear()
            self._victim = None

    @contextlib.contextmanager
    def victim(self, pid: int) -> Iterator[None]:
        """While active, a `kill` action SIGKILLs process `pid`."""
        with self._lock:
            self._victim = pid
        try:
            yield
        finally:
            with self._lock:
                self._victim = None

    # -- what happened ---------------------------------------------------------------------

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def writes(self) -> list[Record]:
        """Every non-GET request received, dry runs included, in order."""
        return [r for r in self.snapshot() if r.request.mutating]

    def effective_writes(self) -> list[Record]:
        return [r for r in self.snapshot() if r.took_effect]

    # -- used by the handler -----------------------------------------------------------------

    def _decide(self, request: Request) -> Action:
        with self._lock:
            chosen = PASS
            for rule in self.rules:
                if not rule.matches(request):
                    continue
                rule.seen += 1
                due = rule.seen >= rule.occurrence and (
                    rule.times is None or rule.fired < rule.times
                )
                if due and chosen is PASS:
                    rule.fired += 1
                    chosen = rule.action
            return chosen

    def _record(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def _kill_victim(self, request: Request) -> None:
        with self._lock:
            pid = self._victim
            self.killed.append(request)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            # Wait until it is really dead (a zombie or gone) before dropping the connection, so
            # it cannot act on the reset. Never reap it here: its parent wants the status.
            wait_for(lambda: _dead(pid), timeout=5)

    def _forward(
        self,
        upstream_connection: _UpstreamConnection,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        return upstream_connection.send(method, target, headers, body)
