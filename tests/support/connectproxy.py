"""An HTTP CONNECT proxy on 127.0.0.1 for the tests: it tunnels TLS to loopback addresses
only (anything else is refused with 403) and records every tunnel it opened, so a test can
tell whether a tool went through it. Start with `with ConnectProxy() as proxy:`."""

from __future__ import annotations

import ipaddress
import select
import socket
import socketserver
import threading
from typing import Any

from tests.support.servers import BackgroundServer, ThreadedServer


class _Handler(socketserver.BaseRequestHandler):
    server: ThreadedServer

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > 65536:
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if method != "CONNECT" or not port.isdigit() or not _loopback(host):
            self.server.owner._note(target, allowed=False)
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.owner._note(target, allowed=True)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        _pump(client, upstream)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pump(a: socket.socket, b: socket.socket) -> None:
    sockets: list[Any] = [a, b]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], 60)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        b.close()


class ConnectProxy(BackgroundServer):
    handler = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.tunnels: list[str] = []  # "host:port" per CONNECT that was let through
        self.refused: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _note(self, target: str, allowed: bool) -> None:
        with self._lock:
            (self.tunnels if allowed else self.refused).append(target)
