"""Proxies as kubectl uses them (issue 21), on the real apiserver: credentials in the proxy URL
are sent as Proxy-Authorization: Basic and never logged; a 407 or a proxy whose certificate
does not verify ends the run at once, naming the proxy without its password; ALL_PROXY is
ignored; "through the proxy" is logged only when this server's requests go through it."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from hack.devenv import legacy
from hack.devenv.cluster import Cluster
from tests.support import chain
from tests.support.authproxy import AuthProxy
from tests.support.connectproxy import ConnectProxy

DIRECT = {
    "HTTPS_PROXY": "",
    "https_proxy": "",
    "HTTP_PROXY": "",
    "http_proxy": "",
    "ALL_PROXY": "",
    "all_proxy": "",
    "NO_PROXY": "",
    "no_proxy": "",
}
USER, PASSWORD = "corp-user", "s3cret:w0rd@x/y"
CREDENTIALS = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
TOOLS: tuple[tuple[chain.Step, tuple[str, ...]], ...] = (
    *((step, ()) for step in chain.CHAIN),
    (chain.STATUS, ()),
    (chain.RESTORE, ("--dry-run",)),
)


def https_proxy(url: str) -> dict[str, str]:
    return {**DIRECT, "HTTPS_PROXY": url, "https_proxy": url}


def never_shown(output: str) -> None:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, quote(PASSWORD, safe=""), basic, "s3cret"):
        assert secret not in output, output


def test_credentials_in_https_proxy_are_sent_for_every_tool(cluster: Cluster) -> None:
    legacy.fresh_install(cluster)
    with AuthProxy(USER, PASSWORD) as proxy:
        env = https_proxy(proxy.url(CREDENTIALS))
        for step, args in TOOLS:
            result = chain.run_in_process(step, cluster.kubeconfig, *args, env=env)
            assert result.exit_code == 0, f"{step.name}: {result.output}"
            assert f"through the proxy {proxy.url()}" in result.output, result.output
            never_shown(result.output)
    assert proxy.tunnels >= len(TOOLS)
    assert {given for _, given in proxy.seen} == {proxy.expected}


def test_credentials_in_a_clusters_proxy_url_are_sent(cluster: Cluster, tmp_path: Path) -> None:
    with AuthProxy(USER, PASSWORD) as proxy:
        config = json.loads(cluster.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["proxy-url"] = proxy.url(CREDENTIALS)
        (tmp_path / "k").write_text(json.dumps(config))
        result = chain.run_in_process(chain.STATUS, tmp_path / "k", env=DIRECT)
    assert result.exit_code == 0, result.output
    assert proxy.tunnels >= 1
    never_shown(result.output)


def test_a_407_ends_the_run_at_once_naming_the_proxy(cluster: Cluster) -> None:
    with AuthProxy(None, None) as proxy:
        env = {**https_proxy(proxy.url(CREDENTIALS)), "CP_RETRY_SECONDS": "30"}
        for step in (chain.MIGRATOR, chain.STATUS):
            started = time.monotonic()
            result = chain.run_in_process(step, cluster.kubeconfig, env=env)
            assert result.exit_code == 1, result.output
            assert time.monotonic() - started < 10, "a 407 is not retried"
            assert f"the proxy {proxy.url()} refused: 407" in result.output, result.output
            assert "attempt 2" not in result.output
            never_shown(result.output)


def self_signed(folder: Path) -> tuple[str, str]:
    cert, key = folder / "proxy.crt", folder / "proxy.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=proxy.corp.test", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_a_proxy_whose_certificate_does_not_verify_ends_the_run_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    with AuthProxy(USER, PASSWORD, tls=self_signed(tmp_path)) as proxy:
        env = {**https_proxy(proxy.url(CREDENTIALS)), "CP_RETRY_SECONDS": "30"}
        started = time.monotonic()
        result = chain.run_in_process(chain.STATUS, cluster.kubeconfig, env=env)
        named = f"the proxy {proxy.url()} refused: its TLS certificate"
    assert result.exit_code == 1, result.output
    assert time.monotonic() - started < 10, "a proxy's TLS failure is not retried"
    assert named in result.output, result.output
    never_shown(result.output)


def test_all_proxy_is_ignored_as_kubectl_ignores_it(cluster: Cluster) -> None:
    with ConnectProxy() as proxy:
        for value in (proxy.url, "socks5://127.0.0.1:1080"):
            env = {**DIRECT, "ALL_PROXY": value, "all_proxy": value}
            result = chain.run_in_process(chain.STATUS, cluster.kubeconfig, env=env)
            assert result.exit_code == 0, result.output
            assert "through the proxy" not in result.output
    assert proxy.tunnels == []


def test_through_the_proxy_is_logged_only_when_the_proxy_is_used(cluster: Cluster) -> None:
    with ConnectProxy() as proxy:
        bypassed = {**https_proxy(proxy.url), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        result = chain.run_in_process(chain.STATUS, cluster.kubeconfig, env=bypassed)
        assert result.exit_code == 0, result.output
        assert "through the proxy" not in result.output and proxy.tunnels == []
        result = chain.run_in_process(chain.STATUS, cluster.kubeconfig, env=https_proxy(proxy.url))
        assert result.exit_code == 0, result.output
        assert f"through the proxy {proxy.url}" in result.output and proxy.tunnels
