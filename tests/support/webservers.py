"""Servers that answer a tool's requests without being an apiserver, as a server URL can reach
them on real networks (issue 21):

- `PrefixProxy`: a reverse proxy that forwards `/PREFIX/...` to the real apiserver (with the
  admin client certificate) and answers any other path with its own HTML 404 page, as nginx
  does; a kubeconfig whose server URL has a wrong path prefix gets those pages;
- `RedirectServer`: every request answered with a 302 or 308 and an empty body (an
  HTTP->HTTPS redirect, a login page);
- `HtmlServer`: every request answered 200 with an HTML page (a portal, a login form).

Each records the paths it was asked for. Plain HTTP on 127.0.0.1; `with` starts and stops it.
"""

from __future__ import annotations

import http.client
import http.server
import json
import ssl
import threading
from pathlib import Path
from typing import Any

from tests.support.servers import BackgroundServer

NGINX_404 = (
    b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n"
    b"</html>\r\n"
)
LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form method=post>"
    b"<input name=user><input name=password type=password></form></body></html>"
)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner: WebServer = self.server.owner  # type: ignore[attr-defined]
        owner.note(self.command, self.path)
        status, headers, data = owner.answer(self.command, self.path, dict(self.headers), body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any


class WebServer(BackgroundServer):
    handler = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def note(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append(f"{method} {path}")

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError


class RedirectServer(WebServer):
    def __init__(self, status: int = 302, location: str = "https://login.example.test/") -> None:
        super().__init__()
        self.status, self.location = status, location

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        return self.status, {"Location": self.location + "?next=" + path}, b""


class HtmlServer(WebServer):
    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "text/html; charset=utf-8"}, LOGIN_PAGE


class PrefixProxy(WebServer):
    """Forwards /PREFIX/... to the apiserver of `admin_kubeconfig` (as its admin)."""

    def __init__(self, admin_kubeconfig: Path, prefix: str = "/k8s") -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        config = json.loads(admin_kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        self._upstream = cluster["server"].removeprefix("https://")
        context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        context.load_cert_chain(user["client-certificate"], user["client-key"])
        self._context = context

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if not path.startswith(self.prefix + "/"):
            return 404, {"Content-Type": "text/html"}, NGINX_404
        connection = http.client.HTTPSConnection(self._upstream, context=self._context, timeout=30)
        try:
            sent = {
                k: v
                for k, v in headers.items()
                if k.lower() in ("accept", "content-type", "user-agent")
            }
            connection.request(method, path[len(self.prefix) :], body=body or None, headers=sent)
            response = connection.getresponse()
            data = response.read()
            kept = {"Content-Type": response.getheader("Content-Type") or "application/json"}
            return response.status, kept, data
        finally:
            connection.close()
