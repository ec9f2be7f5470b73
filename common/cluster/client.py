"""A small JSON client for the Kubernetes API on kubernetes.client.ApiClient: plain dicts in
and out, explicit group/version/resource paths, and our retry-safety policy.

The package does the transport (common.cluster.transport: TLS, proxies, credentials, exec
plugins) with its own retries off; every retry is decided here, within a bounded total time:
429 (honouring Retry-After), 5xx and connection failures. A write is repeated only when the
caller says that is safe (a resourceVersion/uid precondition, a create whose AlreadyExists it
handles, a delete whose NotFound counts as done) or when the request provably never reached
the server.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from common.cluster import answers
from common.cluster.kubeconfig import Connection
from common.cluster.settings import seconds_setting
from common.cluster.transport import (
    ApiClientTransport,
    Response,
    TlsMaterialBroken,
    TlsVerifyFailed,
    Transport,
)
from common.errors import ApiError, ConnectionFailed, RejectedWrite, RetryableError, UsageError

log = logging.getLogger("kube")

MERGE_PATCH = "application/merge-patch+json"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
# For a LIST: the apiserver answers 406 to METADATA_ONLY on a collection.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
# 429 comes from API Priority and Fairness before the request is processed; the 5xx are the
# apiserver's or a proxy's transient failures.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


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
    path += f"/namespaces/{quote(namespace)}" if namespace else ""
    path += f"/{plural}" + (f"/{quote(name)}" if name else "")
    return path + (f"/{subresource}" if subresource else "")


def configmap_path(namespace: str, name: str | None = None) -> str:
    """A ConfigMap's path, or the collection's in `namespace` when `name` is None."""
    return resource_path("", "v1", "configmaps", namespace, name)


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
        stop: threading.Event | None = None,
    ) -> None:
        self.connection = connection
        # Set when a signal ends the run: no request is tried again, and waits end at once.
        self.stop = stop or threading.Event()
        self.user_agent = user_agent
        self.retry_seconds = retry_seconds or seconds_setting("CP_RETRY_SECONDS", 30)
        self.request_timeout = request_timeout or seconds_setting("CP_REQUEST_TIMEOUT", 15)
        self._transport = transport or ApiClientTransport(connection, pool_size)
        self.request_count = 0
        self._served: set[tuple[str, str]] | None = None  # discovery, read once when needed
        self._served_lock = threading.Lock()
        # Paths whose latest object (as read or written) the client keeps: kept(path).
        self._kept: dict[str, dict[str, Any] | None] = {}
        self._keeping: set[str] = set()

    def keep(self, path: str) -> None:
        """From now on, remember the object at `path` as every answer about it shows it: a
        GET (a 404 as None), a write's answer; not a dry run's, nor a DELETE's."""
        self._keeping.add(path)

    def kept(self, path: str) -> tuple[bool, dict[str, Any] | None]:
        """(seen, the object as last seen; None when it did not exist)."""
        return path in self._kept, self._kept.get(path)

    def _remember(
        self, method: str, path: str, query: Mapping[str, str | int] | None, answer: Any
    ) -> None:
        if path not in self._keeping or method == "DELETE" or (query and "dryRun" in query):
            return
        if answer is None or (
            isinstance(answer, dict) and isinstance(answer.get("metadata"), dict)
        ):
            self._kept[path] = answer

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
        """The one place requests go through."""
        url = self.connection.server + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": accept, "User-Agent": self.user_agent}
        if body is not None:
            headers["Content-Type"] = content_type
        may_repeat = method in ("GET", "HEAD") if retry_safe is None else retry_safe
        deadline = time.monotonic() + self.retry_seconds

        def next_delay(attempt: int, retry_after: str | None = None) -> float | None:
            """Seconds to wait before the next try (Retry-After, else exponential backoff with
            jitter), or None when that would pass the deadline."""
            delay = min(4.0, 0.1 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            if retry_after and retry_after.replace(".", "", 1).isdigit():  # never an HTTP date
                delay = float(retry_after)
            return delay if time.monotonic() + delay < deadline else None

        what, server = f"{method} {path}", self.connection.server
        attempt = 0
        while True:
            attempt += 1
            self.request_count += 1
            try:
                response = self._transport(method, url, headers, body, self.request_timeout)
            except TlsVerifyFailed as err:
                raise ConnectionFailed(
                    f"{what}: the certificate of {server} does not verify (check "
                    "certificate-authority, tls-server-name, insecure-skip-tls-verify in "
                    f"{self.connection.source}): {err}"
                ) from err
            except TlsMaterialBroken as err:
                raise UsageError(
                    f"{self.connection.source}: the TLS files or data it names cannot be used "
                    "(check client-certificate, client-key, certificate-authority and their "
                    f"-data forms): {err}"
                ) from err
            except RetryableError:
                raise  # credentials could not be had (a token file, an exec plugin)
            except Exception as err:  # urllib3 raises many kinds: all "no answer"
                cause = _cause(err)
                delay = next_delay(attempt) if may_repeat or _never_sent(err) else None
                if delay is None or self.stop.is_set():
                    raise ConnectionFailed(
                        f"{what}: no answer from the apiserver {server} after {attempt} "
                        f"attempt(s): {cause}"
                    ) from err
                log.warning("%s: %s; attempt %d, retrying in %.1fs", what, cause, attempt, delay)
                self.stop.wait(delay)
                continue
            if response.status < 400:
                answer = self._object(what, response)
                if self._keeping:
                    self._remember(method, path, query, answer)
                return answer
            # 429 means the request was rejected before processing: even a write repeats safely.
            if response.status in RETRYABLE_STATUSES and (may_repeat or response.status == 429):
                delay = next_delay(attempt, response.headers.get("retry-after"))
                if delay is not None and not self.stop.is_set():
                    log.debug("retrying %s after %s in %.2fs", what, response.status, delay)
                    self.stop.wait(delay)
                    continue
            if answers.status_body(response.headers, response.data) is None:
                raise self._not_a_status(what, path, response)
            raise _api_error(method, path, response, self.connection, body)

    def _object(self, what: str, response: Response) -> dict[str, Any]:
        """A 2xx's JSON object; a 3xx or anything but JSON did not come from an apiserver."""
        body = answers.parsed(response.data) if answers.is_json(response.headers) else None
        if response.status >= 300 or not isinstance(body, dict):
            raise answers.not_apiserver(
                what, self.connection.server, response.status, response.headers, response.data
            )
        return body

    def _not_a_status(self, what: str, path: str, response: Response) -> Exception:
        """An error status without the apiserver's Status body: a 404 under /apis/GROUP/VERSION
        is the apiserver's "absent" when discovery (`GET /apis`) answers as an apiserver does
        (it answers those in plain text); anything else is not the apiserver's answer."""
        served_gv = answers.group_version(path)
        if response.status != 404 or served_gv is None:
            return answers.not_apiserver(
                what, self.connection.server, response.status, response.headers, response.data
            )
        served = self.served_group_versions()
        if served is None:
            return answers.not_apiserver(
                what, self.connection.server, response.status, response.headers, response.data
            )
        # Discovery answered as an apiserver does, so the 404 is the apiserver's own: it
        # answers in plain text for a group/version no CRD serves, and for one whose CRD is
        # being added or removed (discovery may still list it for a moment).
        group, version = served_gv
        listed = "lists it: a CRD being added or removed" if served_gv in served else "not listed"
        message = f"the apiserver does not serve {group}/{version} here (discovery {listed})"
        return ApiError(what.split()[0], path, 404, "NotFound", message, {})

    def served_group_versions(self) -> set[tuple[str, str]] | None:
        """The (group, version) pairs the apiserver serves, from `GET /apis`, read once."""
        with self._served_lock:
            if self._served is None:
                self._served = answers.served_group_versions(self.request("GET", "/apis"))
            return self._served

    def get(self, path: str, *, accept: str = "application/json") -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", path, accept=accept)
        except ApiError as err:
            if err.status == 404 and err.status_reason == "NotFound":  # the apiserver's own word
                if self._keeping:
                    self._remember("GET", path, None, None)
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
            query["continue"] = (page.get("metadata") or {}).get("continue") or ""
            if not query["continue"]:
                return

    def create(self, path: str, body: dict[str, Any], **query: str) -> dict[str, Any]:
        # Safe to repeat: a repeat answers 409 AlreadyExists, which callers treat as "re-observe".
        return self.request("POST", path, body=body, query=query or None, retry_safe=True)

    def merge_patch(
        self, path: str, patch: dict[str, Any], *, retry_safe: bool, **query: str
    ) -> dict[str, Any]:
        return self.request(
            "PATCH", path, body=patch, content_type=MERGE_PATCH, query=query, retry_safe=retry_safe
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
        body: dict[str, Any] = {"kind": "DeleteOptions", "propagationPolicy": "Background"}
        preconditions = {"uid": uid, "resourceVersion": resource_version}
        if any(preconditions.values()):
            body["preconditions"] = {k: v for k, v in preconditions.items() if v}
        query = None
        if dry_run:
            # In the body: with a body, the apiserver reads DeleteOptions from it alone, and a
            # dryRun only in the query would be ignored (the object deleted). In the query too,
            # where proxies and audit readers see it, as for other writes.
            body["dryRun"] = ["All"]
            query = {"dryRun": "All"}
        try:
            self.request(
                "DELETE", path, query=query, body={"apiVersion": "v1", **body}, retry_safe=True
            )
        except ApiError as err:
            if err.status == 404 and err.status_reason == "NotFound":
                return False
            raise
        return True


def _never_sent(err: BaseException) -> bool:
    """A connection that was never established: the request never left this machine."""
    names = {c.__name__ for c in type(err).__mro__}
    if names & {"NewConnectionError", "ConnectTimeoutError", "ConnectionRefusedError"}:
        return True
    inner = [err.__context__, err.__cause__, *(a for a in err.args if isinstance(a, Exception))]
    return any(isinstance(e, Exception) and _never_sent(e) for e in inner)


# What went wrong, in words a person can act on: (exception class names, text, label).
_CAUSES = (
    ({"ProxyError"}, "Unable to connect to proxy", "the proxy failed"),
    ({"NameResolutionError"}, "Name or service not known", "unknown host"),
    ({"ConnectionRefusedError"}, "Connection refused", "connection refused"),
    ({"ConnectTimeoutError"}, None, "connect timed out"),
    ({"ReadTimeoutError", "TimeoutError"}, None, "no answer in time"),
    (
        {"ProtocolError", "ConnectionResetError", "RemoteDisconnected"},
        None,
        "connection closed before the answer",
    ),
)


def _cause(err: BaseException) -> str:
    """The cause in words, then the library's own message."""
    names, text = {c.__name__ for c in type(err).__mro__}, str(err)
    label = next(
        (label for kinds, words, label in _CAUSES if names & kinds or (words and words in text)),
        type(err).__name__,
    )
    return f"{label} ({text})" if text and text != label else label


# How the apiserver words a denial by admission control (never RBAC's "cannot <verb>"):
# ValidatingAdmissionPolicy 'NAME' with binding 'BINDING' denied request: ...
# admission webhook "NAME" denied the request: ...
_ADMISSION_DENIALS = (
    re.compile(r"ValidatingAdmissionPolicy '([^']+)'(?: with binding '([^']+)')?"),
    re.compile(r'admission webhook "([^"]+)"'),
)


def admission_policy(message: str) -> str:
    """The admission policy or webhook an answer's message names as the denier, or ""."""
    for number, pattern in enumerate(_ADMISSION_DENIALS):
        found = pattern.search(message)
        if found is None:
            continue
        if number == 0:
            binding = f" (binding {found.group(2)})" if found.group(2) else ""
            return f"ValidatingAdmissionPolicy {found.group(1)}{binding}"
        return f"admission webhook {found.group(1)}"
    return ""


def _object_named(path: str, status: dict[str, Any], sent: Any) -> str:
    """`resource namespace/name` of the object a request was about: from the answer's details,
    else from the path (and, for a create, the body sent)."""
    parts = path.split("?")[0].strip("/").split("/")
    namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts[:-2] else None
    tail = (
        parts[parts.index("namespaces") + 2 :]
        if namespace
        else parts[2 if parts[0] == "api" else 3 :]
    )
    group = "" if parts[0] == "api" else parts[1]
    found = status.get("details")
    details: dict[str, Any] = found if isinstance(found, dict) else {}
    resource = tail[0] if tail else str(details.get("kind") or "object")
    name = details.get("name") or (tail[1] if len(tail) > 1 else None)
    if name is None and isinstance(sent, dict):
        name = (sent.get("metadata") or {}).get("name")
    kind = f"{resource}.{group}" if group and "." not in resource else resource
    ref = f"{namespace}/{name}" if namespace else str(name)
    return f"{kind} {ref}"


def _api_error(
    method: str, path: str, response: Response, connection: Connection, sent: Any = None
) -> ApiError:
    try:
        parsed = json.loads(response.data)
    except ValueError:
        parsed = None
    body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    message = str(body.get("message", response.data.decode("utf-8", "replace")[:500])).strip()
    if response.status == 401:
        message += (
            f" (the credentials of {f'user {connection.user}' if connection.user else 'this run'}"
            f" from {connection.source} were rejected: an expired or revoked token, or a client "
            "certificate the apiserver does not trust)"
        )
    reason = body.get("reason") or "Error"
    if method not in ("GET", "HEAD"):
        policy = admission_policy(message) if response.status in (400, 403, 422) else ""
        if response.status == 422 or policy:
            found = body.get("details")
            details: dict[str, Any] = found if isinstance(found, dict) else {}
            listed = details.get("causes")
            causes: list[Any] = listed if isinstance(listed, list) else []
            fields = [str(c["field"]) for c in causes if isinstance(c, dict) and c.get("field")]
            return RejectedWrite(
                method,
                path,
                response.status,
                reason,
                message,
                body,
                object=_object_named(path, body, sent),
                fields=list(dict.fromkeys(fields)),
                policy=policy,
            )
    return ApiError(method, path, response.status, reason, message, body)
