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


def read_request(client: socket.socket) -> tuple[str, str, dict[str, str]] | None:
    """A request's method, target and headers (names in lower case), read up to the end of its
    head; None if the client hung up first or sent more than 64 KiB without ending it."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(4096)
        if not chunk or len(head) > 65536:
            return None
        head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    return method, rest.partition(" ")[0], headers


def loopback_address(method: str, target: str) -> tuple[str, int] | None:
    """Where a CONNECT to a loopback host:port goes; None for any other request."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if method != "CONNECT" or not port.isdigit() or not _loopback(host):
        return None
    return host, int(port)


def open_upstream(client: socket.socket, address: tuple[str, int]) -> socket.socket | None:
    """A connection to `address`, or None after answering the client 502."""
    try:
        return socket.create_connection(address, timeout=10)
    except OSError:
        client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        return None


class _Handler(socketserver.BaseRequestHandler):
    server: ThreadedServer

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(30)
        request = read_request(client)
        if request is None:
            return
        method, target, _ = request
        address = loopback_address(method, target)
        if address is None:
            self.server.owner._note(target, allowed=False)
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = open_upstream(client, address)
        if upstream is None:
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
