"""Proxies as kubectl uses them, where the `kubernetes` package (checked against 37.0.3, with
urllib3 2.x) differs; tests/unit/common/test_package_pins.py tells when that changes:

- credentials in the proxy URL (`http://user:pass@host:port`, from HTTPS_PROXY or a
  cluster's proxy-url) are sent as `Proxy-Authorization: Basic` (the package passes the URL to
  urllib3, which ignores them, so every CONNECT is answered 407);
- ALL_PROXY / all_proxy are ignored (the package falls back to them; Go's
  http.ProxyFromEnvironment, and so kubectl, never reads them);
- a 407, or a proxy whose TLS certificate does not verify, ends the run at once (`ProxyRefused`):
  no retry can change either.

The proxy is named without its password everywhere.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from common.errors import RetryableError


class ProxyRefused(RetryableError):
    """The proxy refused the tunnel (407) or its own TLS certificate does not verify."""


def without_password(url: str) -> str:
    scheme, _, rest = url.rpartition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}" if scheme else rest.rpartition("@")[2]


def settle(configuration: Any, server: str, own_proxy: str | None) -> None:
    """The proxy kubectl would use for `server`, with its credentials as a header."""
    if own_proxy is None:
        from urllib.request import getproxies

        # The package's Configuration falls back to ALL_PROXY; kubectl never does.
        configuration.proxy = getproxies().get(urlsplit(server).scheme) or None
    proxy = configuration.proxy
    if not proxy or "://" not in proxy:
        return
    parts = urlsplit(proxy)
    if parts.username is None and parts.password is None:
        return
    from urllib3 import make_headers

    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    headers = dict(configuration.proxy_headers or {})
    headers.update(make_headers(proxy_basic_auth=f"{user}:{password}"))
    configuration.proxy_headers = headers


def in_use(client: Any) -> bool:
    """Whether the package's client sends this server's requests through a proxy (it does
    not when NO_PROXY names the server)."""
    from urllib3 import ProxyManager

    return isinstance(getattr(client.rest_client, "pool_manager", None), ProxyManager)


def refusal(err: BaseException) -> str | None:
    """Why the proxy refused, when no retry can help: a 407, or its TLS failing."""
    seen: set[int] = set()
    chain: list[BaseException] = []
    pending: list[BaseException] = [err]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        chain.append(current)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
    texts = " ".join(str(e) for e in chain)
    if "Tunnel connection failed: 407" in texts:
        return (
            "407 Proxy Authentication Required: the proxy wants credentials it was not given "
            "or refused them (write them in the proxy URL: http://USER:PASSWORD@HOST:PORT)"
        )
    names = {c.__name__ for e in chain for c in type(e).__mro__}
    if "ProxyError" in names and ("SSLError" in names or "CERTIFICATE_VERIFY_FAILED" in texts):
        detail = next((str(e) for e in chain if "SSL" in type(e).__name__), texts)
        return f"its TLS certificate does not verify or its TLS fails ({detail})"
    return None
