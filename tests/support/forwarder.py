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


class TcpForwarder:
    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        self.listen_host = listen_host
        self.target = target
        self.connections = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None

    def __enter__(self) -> TcpForwarder:
        kind = _Server6 if ":" in self.listen_host else _Server
        server = kind((self.listen_host, 0), _Handler)  # OSError when it cannot listen there
        server.forwarder = self
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """https://HOST:PORT, with an IPv6 address in brackets as URLs write it."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"https://{host}:{self.port}"

    def _count(self) -> None:
        with self._lock:
            self.connections += 1


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    forwarder: TcpForwarder


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        try:
            upstream = socket.create_connection(self.server.forwarder.target, timeout=10)
        except OSError:
            return
        self.server.forwarder._count()
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
