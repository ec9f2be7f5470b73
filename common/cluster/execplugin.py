"""Exec credential plugins as kubectl runs them (client.authentication.k8s.io).

The `kubernetes` package (checked against 37.0.3; tests/unit/common/test_package_pins.py tells
when that changes) runs a user's exec plugin itself, but: it fetches the token again whenever
less than 5 minutes are left (so before every request for short-lived tokens: 71 plugin runs in
one cleaner run), waits for a plugin without a time limit, ignores interactiveMode, leaves stdin
open, drops the plugin's stderr on success, and sends the raw kubeconfig keys for
provideClusterInfo. Here instead:

- a credential is kept until it expires, less a small margin (a tenth of its life, at most 5 s;
  client-go uses none), and fetched again only then;
- a plugin that does not answer within CP_EXEC_TIMEOUT seconds (default 60) is stopped and
  the run ends (exit 1) naming it;
- `interactiveMode: Always` without a terminal is exit 2; under `Never` (and `IfAvailable`
  without a terminal) stdin is /dev/null;
- the plugin's stderr is logged, a line each (on a terminal in interactive use, it goes to
  the terminal, as kubectl lets it);
- with provideClusterInfo, KUBERNETES_EXEC_INFO carries the cluster as client-go sends it:
  server, tls-server-name, insecure-skip-tls-verify, certificate-authority-data (the CA's
  content, also when the kubeconfig names a file), proxy-url, disable-compression, config;
- it runs in the tool's working directory, as kubectl's; a command with a slash is relative to
  the kubeconfig file that defines it (common.cluster.kubeconfig_rules).
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common.errors import RetryableError, UsageError

log = logging.getLogger("kube")

DEFAULT_TIMEOUT = 60.0
MAX_MARGIN = 5.0  # seconds before expiry at which a credential is fetched again


def exec_timeout(environ: dict[str, str] | None = None) -> float:
    raw = (environ if environ is not None else os.environ).get("CP_EXEC_TIMEOUT", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise UsageError(f"CP_EXEC_TIMEOUT={raw!r}: a number of seconds greater than 0 is needed")
    return value


def _terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):
        return False


class ExecPlugin:
    """One user's exec plugin: `token()` gives a current bearer token (fetching it only when
    the last one expired), `certificate()` a client certificate and key it gave instead."""

    def __init__(
        self, spec: dict[str, Any], user: str | None, cluster: dict[str, Any], source: str
    ) -> None:
        for key in ("command", "apiVersion"):
            if not spec.get(key):
                raise UsageError(f"{source}: user {user}: exec needs {key!r}")
        self.spec, self.user, self.source = spec, user, source
        self.command = str(spec["command"])
        self.cluster = cluster if spec.get("provideClusterInfo") else None
        self.mode = spec.get("interactiveMode") or "IfAvailable"  # v1beta1's default
        self.timeout = exec_timeout()
        self.runs = 0
        self._status: dict[str, Any] | None = None
        self._fresh_until = 0.0  # time.monotonic() when the credential must be fetched again
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"the exec plugin of user {self.user}"

    def named(self) -> str:
        return f"(command {self.command}, from {self.source})"

    def status(self) -> dict[str, Any]:
        """The ExecCredential status, fetched again when the last one has (almost) expired."""
        with self._lock:
            if self._status is None or time.monotonic() >= self._fresh_until:
                self._status = self._run()
            return self._status

    def forget(self, token: str) -> bool:
        """The apiserver refused `token`: unless another request has fetched a new one
        already, the next fetches anew. True when this call made it so."""
        with self._lock:
            if self._status is None or self._status.get("token") != token:
                return False
            self._status = None
            return True

    def token(self) -> str | None:
        token = self.status().get("token")
        return str(token) if token else None

    def _run(self) -> dict[str, Any]:
        interactive = self.mode != "Never" and _terminal()
        if self.mode == "Always" and not interactive:
            raise UsageError(
                f"{self.describe()} {self.named()} has interactiveMode: Always, but stdin is "
                "not a terminal (kubectl refuses it too); use a plugin or mode that works "
                "without one"
            )
        info: dict[str, Any] = {
            "apiVersion": self.spec["apiVersion"],
            "kind": "ExecCredential",
            "spec": {"interactive": interactive},
        }
        if self.cluster is not None:
            info["spec"]["cluster"] = cluster_info(self.cluster)
        env = dict(os.environ)
        for item in self.spec.get("env") or []:
            env[str(item["name"])] = str(item["value"])
        env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
        self.runs += 1
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                [self.command, *[str(a) for a in self.spec.get("args") or []]],
                stdin=None if interactive else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=None if interactive else subprocess.PIPE,
                env=env,
                start_new_session=not interactive,  # so that a hung one is stopped whole
            )
        except OSError as err:
            hint = str(self.spec.get("installHint") or "").strip()  # as kubectl shows it
            raise UsageError(
                f"{self.describe()} cannot be started {self.named()}: {err}"
                + (f"; {hint}" if hint else "")
            ) from err
        try:
            out, err_text = process.communicate(timeout=self.timeout)
        except BaseException as err:  # a time-out, or a signal ending the run: stop it too
            _stop(process)
            if not isinstance(err, subprocess.TimeoutExpired):
                raise
            raise RetryableError(
                f"{self.describe()} did not answer within {self.timeout:g}s (CP_EXEC_TIMEOUT) "
                f"and was stopped {self.named()}"
            ) from None
        for line in (err_text or b"").decode("utf-8", "replace").splitlines():
            if line.strip():
                log.info("exec plugin %s: %s", self.command, line.rstrip())
        if process.returncode != 0:
            raise RetryableError(
                f"{self.describe()} gave no credentials {self.named()}: it exited with status "
                f"{process.returncode} (its stderr is logged above)"
            )
        status = self._parse(out)
        self._fresh_until = _fresh_until(status, started)
        return status

    def _parse(self, out: bytes) -> dict[str, Any]:
        try:
            answer = json.loads(out)
        except ValueError as err:
            raise RetryableError(
                f"{self.describe()} printed no JSON ExecCredential: {err}"
            ) from err
        if not isinstance(answer, dict) or answer.get("kind") != "ExecCredential":
            raise RetryableError(f"{self.describe()} printed no ExecCredential")
        if answer.get("apiVersion") != self.spec["apiVersion"]:
            raise RetryableError(
                f"{self.describe()} answered {answer.get('apiVersion')}, not the "
                f"{self.spec['apiVersion']} the kubeconfig asks for"
            )
        status = answer.get("status")
        if not isinstance(status, dict) or not (
            status.get("token")
            or (status.get("clientCertificateData") and status.get("clientKeyData"))
        ):
            raise RetryableError(
                f"{self.describe()} gave no credentials: no status.token and no "
                "clientCertificateData with clientKeyData"
            )
        return status


def _fresh_until(status: dict[str, Any], started: float) -> float:
    """When to fetch again: at expiry less a tenth of the credential's life (at most 5 s)."""
    stamp = status.get("expirationTimestamp")
    if not stamp:
        return float("inf")  # no expiry: valid for the run, as in client-go
    try:
        expiry = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return started  # unreadable: fetched for every request, as safe as can be
    left = (expiry - datetime.datetime.now(datetime.UTC)).total_seconds()
    return time.monotonic() + left - min(MAX_MARGIN, max(left, 0.0) / 10)


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    process.communicate()


def cluster_info(cluster: dict[str, Any]) -> dict[str, Any]:
    """The cluster as client-go puts it in KUBERNETES_EXEC_INFO (clientauthentication
    Cluster): the CA as certificate-authority-data even when the kubeconfig names a file."""
    info: dict[str, Any] = {"server": cluster.get("server")}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url", "disable-compression"):
        if cluster.get(key) not in (None, ""):
            info[key] = cluster[key]
    data = cluster.get("certificate-authority-data")
    if not data and cluster.get("certificate-authority"):
        try:
            data = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
        except OSError as err:
            where = cluster["certificate-authority"]
            raise UsageError(f"certificate-authority {where}: {err}") from err
    if data:
        info["certificate-authority-data"] = data
    for extension in cluster.get("extensions") or []:
        if (
            isinstance(extension, dict)
            and extension.get("name") == "client.authentication.k8s.io/exec"
        ):
            info["config"] = extension.get("extension")
    return info
