"""A plain TCP forwarder for the tests: it listens on one address (such as [::1]) and copies
bytes both ways to another (the apiserver on 127.0.0.1), so that a tool can reach the real
apiserver at an address it does not bind itself. TLS passes through untouched: the tool
verifies the apiserver's own certificate. Every accepted connection is counted, so a test
can tell that the traffic came this way. Start with `with TcpForwarder(...) as forwarder:`."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading

from tests.support.servers import BackgroundServer, ThreadedServer


class _Handler(socketserver.BaseRequestHandler):
    server: ThreadedServer

    def handle(self) -> None:
        client: socket.socket = self.request
        try:
            upstream = socket.create_connection(self.server.owner.target, timeout=10)
        except OSError:
            return
        self.server.owner._count()
        upstream.settimeout(None)
        back = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
        back.start()
        _copy(client, upstream)
        back.join(timeout=60)
        upstream.close()


def _copy(source: socket.socket, sink: socket.socket) -> None:
    """Bytes from source to sink until source closes; then sink's writing half closes too."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class TcpForwarder(BackgroundServer):
    handler = _Handler

    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        super().__init__(listen_host)
        self.target = target
        self.connections = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """https://HOST:PORT, with an IPv6 address in brackets as URLs write it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def _count(self) -> None:
        with self._lock:
            self.connections += 1
