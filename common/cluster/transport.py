"""The transport under the client: kubernetes.client.ApiClient with urllib3's own retries
off, credentials fresh for every request, and the failures no retry can help told apart
(a certificate that does not verify, TLS files that cannot be used, a proxy that cannot be
used). Every retry is decided by the client (common.cluster.client), not here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.cluster import proxies
from common.cluster.kubeconfig import Connection, read_token_file
from common.errors import RetryableError, UsageError

log = logging.getLogger("kube")

CONNECT_TIMEOUT = 5.0  # per try: a connection not established by then will not be


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    data: bytes


# send(method, url, headers, body, timeout) -> Response; body is the JSON value (or None).
# Raises on a failure without an answer; TlsVerifyFailed when no retry can help.
Transport = Callable[[str, str, dict[str, str], Any, float], Response]


class TlsVerifyFailed(Exception):
    """The apiserver's certificate does not verify against the configured CA or name."""


class TlsMaterialBroken(Exception):
    """The kubeconfig's own TLS files or data cannot be used (no retry can help)."""


class ApiClientTransport:
    """kubernetes.client.ApiClient with urllib3's own retries off; auth per request, so a
    rotating token file and an expiring exec-plugin token are fresh for every try."""

    def __init__(self, connection: Connection, pool_size: int) -> None:
        from kubernetes.client import ApiClient, Configuration

        configuration = Configuration()
        # Before the ApiClient exists: urllib3 would otherwise repeat requests by itself.
        configuration.retries = False
        configuration.connection_pool_maxsize = pool_size
        connection.load(configuration)
        proxies.settle(configuration, connection.server, connection.proxy_url)
        plugin = connection.exec_plugin
        if plugin is not None:  # its failure ends the run here, naming it
            _use_exec_certificate(configuration, plugin.status())
        elif connection.plugin and not configuration.api_key and not configuration.cert_file:
            if connection.plugin == "exec":
                raise RetryableError(
                    f"{connection.source}: the exec plugin of user {connection.user} gave no "
                    "credentials (its error is logged above)"
                )
            raise UsageError(
                f"{connection.source}: the {connection.plugin} of user {connection.user} gave "
                "no credentials; use an exec plugin instead (kubelogin for azure, "
                "gke-gcloud-auth-plugin for gcp), as kubectl does"
            )
        self._connection = connection
        self._configuration = configuration
        try:  # the proxy is set up here: a bad HTTPS_PROXY or proxy-url fails now, not later
            self._client = ApiClient(configuration)
        except Exception as err:
            raise UsageError(
                f"{connection.source}: {_proxy_problem(configuration.proxy, err)}"
            ) from err
        self._proxy: str | None = None  # the proxy this server's requests go through
        if configuration.proxy and proxies.in_use(self._client):
            self._proxy = proxies.without_password(configuration.proxy)
            log.info("through the proxy %s", self._proxy)

    def authorization(self) -> str | None:
        if self._connection.exec_plugin is not None:  # fetched again only once it expires
            token = self._connection.exec_plugin.token()
            return f"Bearer {token}" if token else None
        if self._connection.token_file:
            return "Bearer " + read_token_file(self._connection.token_file)
        try:  # calls the loader's refresh hook: an expired plugin token is fetched again
            setting = self._configuration.auth_settings().get("BearerToken")
        except Exception as err:
            who = f"{self._connection.source}: user {self._connection.user}"
            raise RetryableError(f"{who}: the credentials could not be refreshed: {err}") from err
        value = setting.get("value") if setting else None
        return " ".join(str(value).split()) if value else None

    def __call__(
        self, method: str, url: str, headers: dict[str, str], body: Any, timeout: float
    ) -> Response:
        token = self.authorization()
        response = self._send(method, url, headers, body, timeout, token)
        plugin = self._connection.exec_plugin
        if response.status == 401 and plugin is not None and token:
            # As client-go: a refused exec credential is fetched again, once (a 401 is decided
            # before anything is done, so even a write repeats safely).
            if plugin.forget(token.removeprefix("Bearer ")):
                log.info("the apiserver refused the exec plugin's credential (401): fetching anew")
            response = self._send(method, url, headers, body, timeout, self.authorization())
        return response

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Any,
        timeout: float,
        token: str | None,
    ) -> Response:
        from kubernetes.client.exceptions import ApiException
        from urllib3 import HTTPHeaderDict

        sent = HTTPHeaderDict(headers)  # Impersonate-Group may repeat
        if token:
            sent["Authorization"] = token
        for name, value in self._connection.impersonate:
            sent.add(name, value)
        try:
            answer = self._client.call_api(
                method,
                url,
                header_params=sent,
                body=body,
                _request_timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
            )
        except Exception as err:
            why = proxies.refusal(err) if self._proxy else None
            if why:
                raise proxies.ProxyRefused(
                    f"{self._connection.server}: the proxy {self._proxy} refused: {why}"
                ) from err
            if not isinstance(err, ApiException):
                raise
            # status 0: urllib3's SSLError
            reason = str(err.reason).replace("\n", ": ")
            if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason:
                raise TlsVerifyFailed(reason) from err
            if any(sign in reason for sign in _BROKEN_TLS_MATERIAL):
                raise TlsMaterialBroken(reason) from err
            raise ConnectionError(reason) from err
        try:
            data = answer.read()  # type: ignore[no-untyped-call]
        finally:
            answer.response.release_conn()
        headers = {k.lower(): v for k, v in answer.headers.items()}
        return Response(status=answer.status, headers=headers, data=data or b"")


def _use_exec_certificate(configuration: Any, status: dict[str, Any]) -> None:
    """An exec plugin's client certificate and key (PEM text) for the connections; kept in
    memory only (common.cluster.keymaterial). Used for the whole run."""
    if status.get("token") or not status.get("clientCertificateData"):
        return
    from common.cluster import keymaterial

    configuration.cert_file = keymaterial.path_for(str(status["clientCertificateData"]).encode())
    configuration.key_file = keymaterial.path_for(str(status["clientKeyData"]).encode())


# OpenSSL's words for a certificate, key or CA of our own that it cannot load.
_BROKEN_TLS_MATERIAL = ("KEY_VALUES_MISMATCH", "PEM lib", "NO_CERTIFICATE_OR_CRL_FOUND")


def _proxy_problem(proxy: str | None, err: Exception) -> str:
    where = f"the proxy {proxies.without_password(proxy)}" if proxy else "the client"
    if "socks" in str(err).lower():
        return (
            f"{where}: SOCKS proxies need PySocks, which the tools do not ship; use an HTTP proxy"
        )
    return f"{where} cannot be used ({err}); HTTPS_PROXY and proxy-url need http://HOST:PORT"
