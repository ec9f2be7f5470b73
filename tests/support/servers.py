"""A socketserver in a background thread, for the tests' proxies and forwarders: `with` starts
it on a free port of its host (IPv4 or IPv6) and stops it; handlers reach their owner as
`self.server.owner`."""

from __future__ import annotations

import socket
import socketserver
import threading
from typing import Any, Self


class ThreadedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: Any


class _ThreadedServer6(ThreadedServer):
    address_family = socket.AF_INET6


class BackgroundServer:
    """Subclasses set `handler` (and `server_class` to change how connections are accepted)."""

    handler: type[socketserver.BaseRequestHandler]
    server_class: type[ThreadedServer] = ThreadedServer

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._server: ThreadedServer | None = None

    def start(self) -> None:
        kind = self.server_class
        if ":" in self.host and kind is ThreadedServer:
            kind = _ThreadedServer6
        server = kind((self.host, 0), self.handler)  # OSError when it cannot listen there
        server.owner = self
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])
