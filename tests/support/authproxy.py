"""CONNECT proxies as corporate networks run them (issue 21), for the tests:

- `AuthProxy(user, password)`: tunnels (to loopback only, as tests/support/connectproxy.py)
  only a CONNECT that carries `Proxy-Authorization: Basic` with these credentials, and answers
  407 to any other; `AuthProxy(None, None)` answers 407 to every CONNECT;
- `tls=(cert, key)`: the proxy speaks TLS itself (an `https://` proxy) with that certificate.

Every CONNECT is recorded with the Proxy-Authorization it carried (`seen`).
"""

from __future__ import annotations

import base64
import socket
import socketserver
import ssl
import threading
from typing import Any

from tests.support.connectproxy import _loopback, _pump
from tests.support.servers import BackgroundServer, ThreadedServer


class _Handler(socketserver.BaseRequestHandler):
    server: ThreadedServer

    def handle(self) -> None:
        owner: AuthProxy = self.server.owner
        client: socket.socket = self.request
        client.settimeout(30)
        if owner.context is not None:
            try:
                client = owner.context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                owner.note("<tls handshake failed>", None)
                return
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > 65536:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.partition(" ")[0]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        given = headers.get("proxy-authorization")
        owner.note(target, given)
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if method != "CONNECT" or not port.isdigit() or not _loopback(host):
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        if owner.expected is None or given != owner.expected:
            client.sendall(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n'
            )
            return
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        owner.tunnels += 1
        _pump(client, upstream)


class AuthProxy(BackgroundServer):
    handler = _Handler

    def __init__(
        self, user: str | None, password: str | None, tls: tuple[str, str] | None = None
    ) -> None:
        super().__init__()
        self.expected = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if user is not None
            else None
        )
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*tls)
        self.seen: list[tuple[str, str | None]] = []  # (target, Proxy-Authorization)
        self.tunnels = 0
        self._lock = threading.Lock()

    def url(self, credentials: str = "") -> str:
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def note(self, target: str, authorization: Any) -> None:
        with self._lock:
            self.seen.append((target, authorization))
