"""Which answers are the apiserver's own: only those count as cluster state.

A server URL can reach something that is not an apiserver: a reverse proxy with a wrong path
prefix (plain 404 pages), an HTTP->HTTPS redirect or a login page (a 3xx with an empty body),
a web server's HTML. kubectl reports an error for all of them, and so do we:

- a 3xx is never followed and never read as an object;
- a 2xx must be JSON (its content type, when it has one, a JSON type; its body a JSON object);
- a 404 means "absent" only when its body is a Status with reason NotFound, or when discovery
  (``GET /apis``, read once per client) says the path's group/version is not served: the
  apiserver answers a plain-text 404 for those (a CRD that is not installed).

Anything else is `NotApiserver` (exit 1), naming the server URL, the status, the content type
and the first bytes of the body (redacted).
"""

from __future__ import annotations

import json
import re
from typing import Any

from common.errors import RetryableError

FIRST_BYTES = 160
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]*\+)?json(?:\s*;.*)?$", re.IGNORECASE)


class NotApiserver(RetryableError):
    """The server URL answered, but not as a Kubernetes apiserver does."""


def describe(status: int, headers: dict[str, str], data: bytes) -> str:
    """What came back, for a person: status, content type, where it points, first bytes."""
    content_type = headers.get("content-type") or "no content type"
    parts = [f"HTTP {status}", content_type]
    location = headers.get("location")
    if location:
        parts.append(f"Location: {_redacted(location)}")
    text = _redacted(data[:FIRST_BYTES].decode("utf-8", "replace"))
    parts.append(f"body: {' '.join(text.split())!r}" + (" ..." if len(data) > FIRST_BYTES else ""))
    if not data:
        parts[-1] = "empty body"
    return ", ".join(parts)


def _redacted(text: str) -> str:
    """Credentials masked where they show: `Bearer x` / `Basic x`, and the value after a
    credential-looking key (`password: x`, `token=x`, `"secret": "x"`). Values the run knows
    as secret are masked again by the log layer (common.logs scrubs every line)."""
    text = _CREDENTIAL_SCHEME.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _INLINE_PAIR.sub(lambda m: m.group(1) + MASK, text)


MASK = "<redacted>"
_CREDENTIAL_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"'<>]+")
_INLINE_PAIR = re.compile(
    r"""(?i)((?<![\w-])[\w.-]*(?:password|passwd|secret|token|credential|session|"""
    r"""api[_-]?key|private[_-]?key|code)[\w.-]*["']?\s*[:=]\s*["']?)[^\s"'&<>,;?=]+"""
)


def not_apiserver(
    what: str, server: str, status: int, headers: dict[str, str], data: bytes
) -> NotApiserver:
    if status // 100 == 3:
        hint = (
            "a redirect: the server URL is not the apiserver's (http:// for https://, a login "
            "page, a proxy); it is not followed"
        )
    elif status // 100 == 2:
        hint = "not a Kubernetes API answer (the server URL may point at a web page or a proxy)"
    else:
        hint = (
            f"a {status} without a Kubernetes Status: the server URL may have a wrong path or "
            "point at a proxy, not the apiserver"
        )
    return NotApiserver(
        f"{what}: {server} did not answer as a Kubernetes apiserver: "
        f"{describe(status, headers, data)}; {hint}"
    )


def is_json(headers: dict[str, str]) -> bool:
    content_type = headers.get("content-type")
    return content_type is None or bool(_JSON_TYPE.match(content_type.strip()))


def parsed(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def status_body(headers: dict[str, str], data: bytes) -> dict[str, Any] | None:
    """The answer's Status object, when it is one (kind Status, as the apiserver sends)."""
    if not is_json(headers):
        return None
    body = parsed(data)
    return body if isinstance(body, dict) and body.get("kind") == "Status" else None


def group_version(path: str) -> tuple[str, str] | None:
    """(group, version) of a path under /apis/GROUP/VERSION/..., else None (core, /apis)."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "apis":
        return parts[1], parts[2]
    return None


def served_group_versions(discovery: Any) -> set[tuple[str, str]] | None:
    """(group, version) pairs an APIGroupList lists; None when it is not one."""
    if not isinstance(discovery, dict) or discovery.get("kind") != "APIGroupList":
        return None
    served: set[tuple[str, str]] = set()
    for group in discovery.get("groups") or []:
        if not isinstance(group, dict):
            return None
        for version in group.get("versions") or []:
            if isinstance(version, dict):
                served.add((str(group.get("name")), str(version.get("version"))))
    return served
