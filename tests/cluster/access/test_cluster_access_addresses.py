"""Cluster access by the address a kubeconfig names, on the real apiserver.

An apiserver is not always at an IPv4 address: dual-stack and IPv6-only clusters write the
server as `https://[2001:db8::1]:6443`, with the address in brackets. The tools must reach it
with the certificate verified against the address (an IP SAN, never insecure-skip-tls-verify),
name it in their "cluster:" line as written, tunnel to it through an HTTPS_PROXY, and let
NO_PROXY exempt it. The suite's apiserver listens on 127.0.0.1 only; a TCP forwarder on [::1]
(tests/support/forwarder.py) puts it at an IPv6 address without touching its TLS, and its
serving certificate carries IP ::1 (hack/devenv/controlplane.py make_pki).

A server name that does not resolve (a typo, a cluster deleted from DNS) is a failure a retry
may fix, so it is retried within CP_RETRY_SECONDS, each attempt on a line that says "unknown
host", and the final error names the cause and the server; the run then ends (exit 1) instead
of hanging. `.invalid` is reserved (RFC 6761): it never resolves, and fails at once.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hack.devenv import legacy
from hack.devenv.cluster import Cluster
from hack.devenv.controlplane import make_pki
from tests.support import chain
from tests.support.connectproxy import ConnectProxy
from tests.support.forwarder import TcpForwarder

# No proxy from the environment the tests run in: only what a test sets applies.
DIRECT = {
    "HTTPS_PROXY": "",
    "https_proxy": "",
    "ALL_PROXY": "",
    "all_proxy": "",
    "NO_PROXY": "",
    "no_proxy": "",
}
UNKNOWN_SERVER = "https://cp-no-such-host.invalid:6443"
# "kube: GET /apis: unknown host (...); attempt 2, retrying in 0.2s"
RETRY_LINE = re.compile(r"kube: ([A-Z]+ \S+): (.*); attempt (\d+), retrying in ")
# "GET /apis: no answer from the apiserver https://... after 5 attempt(s): unknown host (...)"
FINAL_LINE = re.compile(
    r"([A-Z]+ \S+): no answer from the apiserver \S+ after (\d+) attempt\(s\): (.*)$"
)
# The chain, then cp-status and cp-restore --dry-run: every tool a person or a Pod runs.
TOOLS: tuple[tuple[chain.Step, tuple[str, ...]], ...] = (
    *((step, ()) for step in chain.CHAIN),
    (chain.STATUS, ()),
    (chain.RESTORE, ("--dry-run",)),
)


def at_server(cluster: Cluster, path: Path, server: str) -> Path:
    """The admin kubeconfig (CA, client certificate) with `server` as the cluster's address."""
    config = json.loads(cluster.kubeconfig.read_text())
    entry = config["clusters"][0]["cluster"]
    entry["server"] = server
    assert entry.get("certificate-authority") and not entry.get("insecure-skip-tls-verify")
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def ipv6(control_plane: Cluster) -> Iterator[TcpForwarder]:
    """The control plane's apiserver, reachable at https://[::1]:PORT as well."""
    server = json.loads(control_plane.kubeconfig.read_text())["clusters"][0]["cluster"]
    apiserver = urlsplit(server["server"])
    assert apiserver.hostname and apiserver.port
    try:
        forwarder = TcpForwarder("::1", (apiserver.hostname, apiserver.port))
        forwarder.__enter__()
    except OSError as err:
        pytest.skip(f"this machine cannot listen on [::1] ({err})")
    try:
        _require_ip_san(forwarder, server["certificate-authority"])
        yield forwarder
    finally:
        forwarder.__exit__()


def _require_ip_san(forwarder: TcpForwarder, ca_file: str) -> None:
    """A control plane reused through CP_TEST_KUBECONFIG may predate IP ::1 in its serving
    certificate: skip then. Against the suite's own control plane, a mismatch fails the test."""
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with (
            socket.create_connection(("::1", forwarder.port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname="::1"),
        ):
            pass
    except ssl.SSLCertVerificationError as err:
        if not os.environ.get("CP_TEST_KUBECONFIG"):
            raise
        pytest.skip(f"the reused control plane's certificate has no IP ::1: {err}")


# -- IPv6 ---------------------------------------------------------------------------------------


def test_every_tool_reaches_an_ipv6_server_with_its_certificate_verified(
    cluster: Cluster, ipv6: TcpForwarder, tmp_path: Path
) -> None:
    legacy.fresh_install(cluster)
    kubeconfig = at_server(cluster, tmp_path / "ipv6", ipv6.url)
    for step, args in TOOLS:
        before = ipv6.connections
        result = chain.run_in_process(step, kubeconfig, *args, env=DIRECT)
        assert result.exit_code == 0, f"{step.name}: {result.output}"
        assert f"cluster: {ipv6.url}," in result.output, result.output
        assert ipv6.connections > before, f"{step.name} did not connect to {ipv6.url}"


def test_an_ipv6_server_whose_certificate_another_ca_signed_fails_at_once(
    cluster: Cluster, ipv6: TcpForwarder, tmp_path: Path
) -> None:
    make_pki(tmp_path / "other")
    kubeconfig = at_server(cluster, tmp_path / "ipv6", ipv6.url)
    config = json.loads(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["certificate-authority"] = str(tmp_path / "other" / "ca.crt")
    kubeconfig.write_text(json.dumps(config))
    result = chain.run_in_process(
        chain.STATUS, kubeconfig, env={**DIRECT, "CP_RETRY_SECONDS": "30"}
    )
    assert result.exit_code == 1, result.output
    assert f"the certificate of {ipv6.url} does not verify" in result.output, result.output
    assert "retrying" not in result.output, "a certificate that does not verify is not retried"


def test_an_https_proxy_tunnels_to_the_ipv6_server_in_brackets(
    cluster: Cluster, ipv6: TcpForwarder, tmp_path: Path
) -> None:
    legacy.fresh_install(cluster)
    kubeconfig = at_server(cluster, tmp_path / "ipv6", ipv6.url)
    with ConnectProxy() as proxy:
        env = {**DIRECT, "HTTPS_PROXY": proxy.url, "https_proxy": proxy.url}
        for step in (chain.MIGRATOR, chain.STATUS):
            result = chain.run_in_process(step, kubeconfig, env=env)
            assert result.exit_code == 0, f"{step.name}: {result.output}"
    assert proxy.tunnels, "no tunnel was opened"
    assert set(proxy.tunnels) == {f"[::1]:{ipv6.port}"}, proxy.tunnels
    assert not proxy.refused
    assert ipv6.connections >= len(proxy.tunnels)


# The kubernetes package matches an IP literal or a CIDR, and "host:port" as written in the
# URL; a bracketed address without its port ("[::1]") is not an IPv6 entry there (nor in Go's
# httpproxy, which kubectl uses), so it is not one of these.
@pytest.mark.parametrize("no_proxy", ["::1", "localhost,127.0.0.1,::1/128", "[::1]:{port}"])
def test_no_proxy_exempts_the_ipv6_server(
    cluster: Cluster, ipv6: TcpForwarder, tmp_path: Path, no_proxy: str
) -> None:
    legacy.fresh_install(cluster)
    kubeconfig = at_server(cluster, tmp_path / "ipv6", ipv6.url)
    exempt = no_proxy.format(port=ipv6.port)
    with ConnectProxy() as proxy:
        env = {
            **DIRECT,
            "HTTPS_PROXY": proxy.url,
            "https_proxy": proxy.url,
            "NO_PROXY": exempt,
            "no_proxy": exempt,
        }
        for step in (chain.MIGRATOR, chain.STATUS):
            before = ipv6.connections
            result = chain.run_in_process(step, kubeconfig, env=env)
            assert result.exit_code == 0, f"{step.name}: {result.output}"
            assert ipv6.connections > before, f"{step.name} did not connect to {ipv6.url}"
    assert proxy.tunnels == [] and proxy.refused == []


# -- a server name that does not resolve -------------------------------------------------------


@pytest.mark.parametrize("step", [chain.STATUS, chain.MIGRATOR], ids=lambda step: step.name)
def test_an_unknown_host_is_retried_within_the_budget_then_named_in_the_error(
    control_plane: Cluster, tmp_path: Path, step: chain.Step
) -> None:
    kubeconfig = at_server(control_plane, tmp_path / "unknown", UNKNOWN_SERVER)
    started = time.monotonic()
    result = chain.run_in_process(step, kubeconfig, env={**DIRECT, "CP_RETRY_SECONDS": "2"})
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert any(f"cluster: {UNKNOWN_SERVER}," in line for line in lines), result.output
    # Requests may run side by side: each counts its own attempts, one line per retry.
    attempts: dict[str, list[int]] = {}
    for line in lines:
        retry = RETRY_LINE.search(line)
        if retry:
            request, cause, attempt = retry.groups()
            assert cause.startswith("unknown host"), line
            attempts.setdefault(request, []).append(int(attempt))
    assert attempts, result.output
    for request, numbers in attempts.items():
        assert numbers == list(range(1, len(numbers) + 1)), (request, numbers)
    final = [line for line in lines if "no answer from the apiserver" in line]
    assert len(final) == 1, result.output
    named = FINAL_LINE.search(final[0])
    assert named, final[0]
    request, tried, cause = named.groups()
    assert len(attempts[request]) >= 2 and int(tried) == len(attempts[request]) + 1, final[0]
    assert f"the apiserver {UNKNOWN_SERVER} after" in final[0], final[0]
    assert cause.startswith("unknown host"), final[0]
    assert elapsed < 20, f"{step.name} took {elapsed:.1f}s with a 2 s retry budget"
