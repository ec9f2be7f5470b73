"""A small JSON client for the Kubernetes API, on the standard library's http.client.

Plain dicts in and out, explicit group/version/resource paths, and retries for 429 (honouring
Retry-After), 5xx and connection failures within a bounded total time. A write is retried only
when the caller says repeating it is safe (a resourceVersion/uid precondition, a create whose
AlreadyExists the caller handles, a delete whose NotFound counts as done) or when the request
provably never reached the server.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from common.errors import ApiError, ConnectionFailed
from common.kubeconfig import Connection
from common.retry import RETRYABLE_STATUSES, RetryBudget, parse_retry_after

log = logging.getLogger("kube")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
# For a LIST: the apiserver answers 406 to METADATA_ONLY on a collection.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
READ_METHODS = frozenset({"GET", "HEAD"})


def resource_path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a resource by explicit group, version and plural ("" is core)."""
    path = f"/api/{version}" if group == "" else f"/apis/{group}/{version}"
    if namespace:
        path += f"/namespaces/{quote(namespace)}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    data: bytes


# send(method, url, headers, body, timeout) -> Response; raises OSError-like errors on failure.
Transport = Callable[[str, str, dict[str, str], bytes | None, float], Response]


class Kube:
    def __init__(
        self,
        connection: Connection,
        *,
        user_agent: str = "cp-migration",
        retry_seconds: float | None = None,
        request_timeout: float | None = None,
        transport: Transport | None = None,
        pool_size: int = 16,
    ) -> None:
        self.connection = connection
        self.user_agent = user_agent
        self.retry_seconds = retry_seconds or float(os.environ.get("CP_RETRY_SECONDS", "30"))
        self.request_timeout = request_timeout or float(os.environ.get("CP_REQUEST_TIMEOUT", "15"))
        self._token = connection.bearer_token()
        self._transport = transport or _HttpTransport(connection, pool_size)
        self.request_count = 0

    # -- the one place requests go through -------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        retry_safe: bool | None = None,
    ) -> dict[str, Any]:
        url = self.connection.server + path
        if query:
            url += "?" + urlencode(query)
        headers = {"Accept": accept, "User-Agent": self.user_agent}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        payload: bytes | None = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        may_repeat = method in READ_METHODS if retry_safe is None else retry_safe
        budget = RetryBudget(total_seconds=self.retry_seconds)
        what = f"{method} {path}"
        while True:
            self.request_count += 1
            try:
                response = self._transport(method, url, headers, payload, self.request_timeout)
            except (
                Exception
            ) as err:  # http.client, ssl and socket raise many kinds: all "no answer"
                never_sent = _never_reached_server(err)
                delay = budget.next_delay() if (may_repeat or never_sent) else None
                if delay is None:
                    raise ConnectionFailed(f"{what}: no answer from the apiserver: {err}") from err
                log.debug("retrying after connection failure: %s: %s", what, err)
                time.sleep(delay)
                continue
            if response.status < 400:
                if not response.data:
                    return {}
                decoded: dict[str, Any] = json.loads(response.data)
                return decoded
            error = _api_error(method, path, response)
            # 429 means the request was rejected before processing, so even a write repeats safely.
            if response.status in RETRYABLE_STATUSES and (may_repeat or response.status == 429):
                delay = budget.next_delay(parse_retry_after(response.headers.get("retry-after")))
                if delay is not None:
                    log.debug("retrying %s after %s in %.2fs", what, response.status, delay)
                    time.sleep(delay)
                    continue
            raise error

    # -- conveniences ------------------------------------------------------------------------

    def get(self, path: str, *, accept: str = "application/json") -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", path, accept=accept)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        page_size: int = 500,
        accept: str = "application/json",
    ) -> Iterator[dict[str, Any]]:
        """Every item of a collection, fetched in pages (limit/continue)."""
        query: dict[str, str | int] = {"limit": page_size}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            page = self.request("GET", path, query=query, accept=accept)
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            query["continue"] = token

    def create(self, path: str, body: dict[str, Any], **query: str) -> dict[str, Any]:
        # Safe to repeat: a repeat answers 409 AlreadyExists, which callers treat as "re-observe".
        return self.request("POST", path, body=body, query=query or None, retry_safe=True)

    def merge_patch(
        self, path: str, patch: dict[str, Any], *, retry_safe: bool, **query: str
    ) -> dict[str, Any]:
        return self.request(
            "PATCH",
            path,
            body=patch,
            content_type=MERGE_PATCH,
            query=query or None,
            retry_safe=retry_safe,
        )

    def replace(self, path: str, body: dict[str, Any], **query: str) -> dict[str, Any]:
        # A PUT always carries metadata.resourceVersion here, which makes a repeat a 409.
        return self.request("PUT", path, body=body, query=query or None, retry_safe=True)

    def delete(
        self,
        path: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        dry_run: bool = False,
    ) -> bool:
        """Delete in the background; False when it was already gone (a 404 counts as done)."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        preconditions = {"uid": uid, "resourceVersion": resource_version}
        if any(preconditions.values()):
            body["preconditions"] = {k: v for k, v in preconditions.items() if v}
        if dry_run:
            body["dryRun"] = ["All"]
        try:
            self.request("DELETE", path, body=body, retry_safe=True)
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True


def _never_reached_server(err: Exception) -> bool:
    name = type(err).__name__
    return name in {"NewConnectionError", "ConnectTimeoutError", "ConnectionRefusedError"} or (
        isinstance(err.__context__, Exception) and _never_reached_server(err.__context__)
    )


def _api_error(method: str, path: str, response: Response) -> ApiError:
    body: dict[str, Any] = {}
    message = response.data.decode("utf-8", "replace")[:500]
    reason = ""
    try:
        parsed = json.loads(response.data)
        if isinstance(parsed, dict):
            body = parsed
            message = str(parsed.get("message", message))
            reason = str(parsed.get("reason", ""))
    except ValueError:
        pass
    return ApiError(method, path, response.status, reason or "Error", message, body)


class NewConnectionError(OSError):
    """No TCP connection to the apiserver (refused, unreachable, unknown host): the request
    never left this machine, so even a write may be repeated. Named as urllib3 names it."""


class ConnectTimeoutError(OSError):
    """The TCP connection was not established in time: nothing was sent."""


class _Connection(http.client.HTTPSConnection):
    """One keep-alive HTTPS connection. Connect failures are told apart from failures after
    the request may have reached the server, and `tls-server-name` sets SNI and the name the
    certificate must carry."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls = context
        self._server_hostname = server_hostname or host

    def connect(self) -> None:
        try:
            self.sock = socket.create_connection((self.host, self.port), self.timeout)
        except TimeoutError as err:
            raise ConnectTimeoutError(f"connect to {self.host}:{self.port} timed out") from err
        except OSError as err:
            raise NewConnectionError(f"cannot connect to {self.host}:{self.port}: {err}") from err
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_hostname)


class _HttpTransport:
    """A blocking pool of at most `pool_size` keep-alive connections to one apiserver, on the
    standard library's http.client.

    Not urllib3: importing urllib3 costs ~75 ms more than http.client, a large share of every
    tool's cold start, and the client needs none of what it adds (one host, no proxies, no
    redirects, no retries of its own: Kube.request decides every retry)."""

    def __init__(self, connection: Connection, pool_size: int) -> None:
        parts = urlsplit(connection.server)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"unsupported apiserver address {connection.server!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._context = _tls_context(connection) if parts.scheme == "https" else None
        self._server_hostname = connection.tls_server_name
        self._slots = threading.BoundedSemaphore(pool_size)
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def __call__(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
    ) -> Response:
        parts = urlsplit(url)  # the server's own path prefix, if any, is part of it
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        with self._slots:
            conn = self._take_idle() or self._open(min(5.0, timeout))
            try:
                assert conn.sock is not None
                conn.sock.settimeout(timeout)
                conn.request(method, target, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            except BaseException:
                conn.close()
                raise
            if answer.will_close:
                conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)
        return Response(
            status=answer.status,
            headers={k.lower(): v for k, v in answer.getheaders()},
            data=data,
        )

    def _open(self, connect_timeout: float) -> _Connection:
        conn = _Connection(
            self._host,
            self._port,
            context=self._context,
            server_hostname=self._server_hostname,
            timeout=connect_timeout,
        )
        conn.connect()  # plain TCP when the server is http:// (no TLS context)
        return conn

    def _take_idle(self) -> _Connection | None:
        """A pooled connection the server has not closed meanwhile (as urllib3 checks: a
        readable idle socket means EOF or garbage, never a usable connection)."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            sock = conn.sock
            if sock is not None and not select.select([sock], [], [], 0)[0]:
                return conn
            conn.close()


def _tls_context(connection: Connection) -> ssl.SSLContext:
    # Like client-go: a kubeconfig's CA replaces the system roots rather than adding to
    # them, which also spares loading the system store (~20-30 ms of every cold start).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if connection.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if connection.ca_file or connection.ca_data:
        context.load_verify_locations(
            cafile=connection.ca_file,
            cadata=connection.ca_data.decode() if connection.ca_data else None,
        )
    elif not connection.insecure:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if connection.cert_file and connection.key_file:
        context.load_cert_chain(connection.cert_file, connection.key_file)
    elif connection.cert_data and connection.key_data:
        _load_cert_chain_from_memory(context, connection.cert_data, connection.key_data)
    return context


def _load_cert_chain_from_memory(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl only loads client certificates from files; keep them in /tmp (the one writable
    # place in the images) just long enough to load, readable by us alone. tempfile is
    # imported here: it pulls in shutil, bz2 and lzma, which only this path needs.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cp-tls-") as folder:
        cert_path = os.path.join(folder, "client.crt")
        key_path = os.path.join(folder, "client.key")
        for path, content in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
        context.load_cert_chain(cert_path, key_path)
