"""Cluster access as kubectl does it, on the real apiserver: proxies (HTTPS_PROXY, a cluster's
proxy-url, NO_PROXY), exec-plugin credentials that expire mid-run, a rotating tokenFile,
tls-server-name, impersonation, a gcp auth-provider's cached token, and failures that say what
is wrong at once."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from common.cluster.client import Kube, resource_path
from common.cluster.kubeconfig import resolve
from common.errors import ApiError
from hack.devenv import legacy
from hack.devenv.cluster import Cluster
from tests.support import chain
from tests.support.connectproxy import ConnectProxy

NAMESPACES = resource_path("", "v1", "namespaces")
NO_PROXY_ENV = {"NO_PROXY": "", "no_proxy": ""}
EXEC_ACCOUNT = ("kyma-system", "cp-migration-exec-test")


def variant(cluster: Cluster, path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The admin kubeconfig with `change` applied to it (a dict with cluster and user)."""
    config = json.loads(cluster.kubeconfig.read_text())
    change(config)
    path.write_text(json.dumps(config))
    return path


def cluster_of(config: dict[str, Any]) -> dict[str, Any]:
    return dict(config["clusters"][0]["cluster"])


def run_tools(kubeconfig: Path, env: dict[str, str], proxy: ConnectProxy) -> dict[str, int]:
    """The chain, then cp-status and cp-restore --dry-run; the tunnels each tool opened."""
    opened: dict[str, int] = {}
    for step, args in [
        (chain.MIGRATOR, ()),
        (chain.BACKUP, ()),
        (chain.CLEANER, ()),
        (chain.STATUS, ()),
        (chain.RESTORE, ("--dry-run",)),
    ]:
        before = len(proxy.tunnels)
        result = chain.run_in_process(step, kubeconfig, *args, env=env)
        assert result.exit_code == 0, f"{step.name}: {result.output}"
        opened[step.name] = len(proxy.tunnels) - before
    return opened


def test_every_tool_goes_through_the_https_proxy(cluster: Cluster) -> None:
    legacy.fresh_install(cluster)
    with ConnectProxy() as proxy:
        opened = run_tools(cluster.kubeconfig, {"HTTPS_PROXY": proxy.url, **NO_PROXY_ENV}, proxy)
    assert all(count >= 1 for count in opened.values()), opened
    assert not proxy.refused


def test_every_tool_goes_through_the_clusters_proxy_url(cluster: Cluster, tmp_path: Path) -> None:
    legacy.fresh_install(cluster)
    with ConnectProxy() as proxy:

        def set_proxy(config: dict[str, Any]) -> None:
            config["clusters"][0]["cluster"] = {**cluster_of(config), "proxy-url": proxy.url}

        kubeconfig = variant(cluster, tmp_path / "proxied", set_proxy)
        opened = run_tools(kubeconfig, NO_PROXY_ENV, proxy)
    assert all(count >= 1 for count in opened.values()), opened


def test_no_proxy_bypasses_the_proxy(cluster: Cluster) -> None:
    legacy.fresh_install(cluster)
    with ConnectProxy() as proxy:
        env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        result = chain.run_in_process(chain.MIGRATOR, cluster.kubeconfig, env=env)
    assert result.exit_code == 0, result.output
    assert proxy.tunnels == []


def exec_account(cluster: Cluster) -> None:
    """A ServiceAccount bound to cluster-admin: the identity here, not RBAC, is under test."""
    namespace, name = EXEC_ACCOUNT
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        ]
    )


def test_an_exec_plugin_token_is_used_and_fetched_again_when_it_expires(
    cluster: Cluster, tmp_path: Path
) -> None:
    legacy.fresh_install(cluster)
    exec_account(cluster)
    (tmp_path / "token").write_text(cluster.mint_token(*EXEC_ACCOUNT))
    calls = tmp_path / "calls"
    plugin = tmp_path / "plugin.py"
    # Each credential expires a second after it is issued, so the run outlives several.
    plugin.write_text(
        textwrap.dedent(
            f"""
            import datetime, json, pathlib
            with open({str(calls)!r}, "a") as calls:
                calls.write("x\\n")
            expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
            print(json.dumps({{
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "status": {{
                    "token": pathlib.Path({str(tmp_path / "token")!r}).read_text(),
                    "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }},
            }}))
            """
        )
    )

    def use_plugin(config: dict[str, Any]) -> None:
        config["users"][0]["user"] = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": sys.executable,
                "args": [str(plugin)],
                "interactiveMode": "Never",
            }
        }

    kubeconfig = variant(cluster, tmp_path / "exec", use_plugin)
    result = chain.run_chain(kubeconfig)
    assert result.succeeded, result.output()
    # Each tool fetches its own; one fetched again on expiry: tests/cluster/access/
    # test_exec_plugins.py (a cleaner run that outlives its 2 s tokens).
    assert len(calls.read_text().split()) >= len(chain.CHAIN)


def test_a_rotated_token_file_is_read_again(cluster: Cluster, tmp_path: Path) -> None:
    exec_account(cluster)
    token = tmp_path / "token"
    token.write_text(cluster.mint_token(*EXEC_ACCOUNT) + "\n")

    def use_token_file(config: dict[str, Any]) -> None:
        config["users"][0]["user"] = {"tokenFile": "token"}  # relative to the kubeconfig

    kube = Kube(resolve(str(variant(cluster, tmp_path / "k", use_token_file)), None))
    assert kube.get(NAMESPACES) is not None
    token.write_text("revoked")
    with pytest.raises(ApiError) as caught:
        kube.get(NAMESPACES)
    assert caught.value.status == 401
    token.write_text(cluster.mint_token(*EXEC_ACCOUNT))
    assert kube.get(NAMESPACES) is not None


def test_tls_server_name_is_honoured_and_a_mismatch_fails_at_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    def server_name(name: str) -> Callable[[dict[str, Any]], None]:
        def change(config: dict[str, Any]) -> None:
            config["clusters"][0]["cluster"] = {**cluster_of(config), "tls-server-name": name}

        return change

    good = variant(cluster, tmp_path / "good", server_name("kubernetes.default.svc"))
    result = chain.run_in_process(chain.STATUS, good)
    assert result.exit_code == 0, result.output
    bad = variant(cluster, tmp_path / "bad", server_name("wrong.invalid"))
    started = time.monotonic()
    result = chain.run_in_process(chain.STATUS, bad, env={"CP_RETRY_SECONDS": "30"})
    assert result.exit_code == 1, result.output
    assert "does not verify" in result.output and "tls-server-name" in result.output
    assert time.monotonic() - started < 10, "a certificate that does not verify is not retried"


def test_a_refused_connection_is_retried_with_a_line_per_attempt_naming_the_cause(
    cluster: Cluster, tmp_path: Path
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    def nowhere(config: dict[str, Any]) -> None:
        config["clusters"][0]["cluster"] = {
            **cluster_of(config),
            "server": f"https://127.0.0.1:{port}",
        }

    kubeconfig = variant(cluster, tmp_path / "nowhere", nowhere)
    result = chain.run_in_process(chain.MIGRATOR, kubeconfig, env={"CP_RETRY_SECONDS": "2"})
    assert result.exit_code == 1, result.output
    assert result.output.count("connection refused") >= 3, result.output
    assert "attempt 2" in result.output, result.output
    assert f"cluster: https://127.0.0.1:{port}" in result.output


def test_impersonation_is_honoured(cluster: Cluster, tmp_path: Path) -> None:
    def impersonate(**fields: Any) -> Callable[[dict[str, Any]], None]:
        def change(config: dict[str, Any]) -> None:
            config["users"][0]["user"] = {**config["users"][0]["user"], **fields}

        return change

    nobody = variant(cluster, tmp_path / "nobody", impersonate(**{"as": "jane"}))
    result = chain.run_in_process(chain.MIGRATOR, nobody)
    assert result.exit_code == 1, result.output
    assert 'User "jane" cannot' in result.output
    assert "as jane" in result.output
    admin_group = impersonate(**{"as": "jane", "as-groups": ["devs", "system:masters"]})
    result = chain.run_in_process(chain.STATUS, variant(cluster, tmp_path / "admin", admin_group))
    assert result.exit_code == 0, result.output
    assert "403" not in result.output, result.output


def test_a_kubeconfig_list_of_missing_files_is_exit_2_naming_them(tmp_path: Path) -> None:
    from migrator.cli import main

    typo = str(tmp_path / "confg")
    result = CliRunner().invoke(main, ["--log-format", "text"], env={"KUBECONFIG": typo})
    assert result.exit_code == 2, result.output
    assert typo in result.output


def test_a_failing_exec_plugin_is_exit_1_with_its_error(tmp_path: Path) -> None:
    from migrator.cli import main

    plugin = tmp_path / "plugin.py"
    plugin.write_text("import sys\nsys.exit('login required: run the login command first')\n")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [
            {
                "name": "sso",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": sys.executable,
                        "args": [str(plugin)],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "sso"}}],
        "current-context": "x",
    }
    (tmp_path / "k").write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["--kubeconfig", str(tmp_path / "k"), "--log-format", "text"])
    assert result.exit_code == 1, result.output
    assert "login required" in result.output
    assert "exec plugin of user sso gave no credentials" in result.output


def test_a_clusters_proxy_url_applies_whatever_no_proxy_says(
    cluster: Cluster, tmp_path: Path
) -> None:
    with ConnectProxy() as proxy:

        def set_proxy(config: dict[str, Any]) -> None:
            config["clusters"][0]["cluster"] = {**cluster_of(config), "proxy-url": proxy.url}

        kubeconfig = variant(cluster, tmp_path / "proxied", set_proxy)
        env = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        result = chain.run_in_process(chain.STATUS, kubeconfig, env=env)
    assert result.exit_code == 0, result.output
    assert proxy.tunnels, "kubectl uses a cluster's proxy-url even for a NO_PROXY host"


def test_an_auth_provider_token_reaches_the_authorization_header(tmp_path: Path) -> None:
    from common.cluster.transport import ApiClientTransport

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    id_token = f"{b64({'alg': 'none'})}.{b64({'sub': 'jane'})}.c2ln"
    config = {
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [
            {
                "name": "oidc",
                "user": {
                    "auth-provider": {
                        "name": "oidc",
                        "config": {"id-token": id_token, "idp-issuer-url": "https://idp"},
                    }
                },
            }
        ],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "oidc"}}],
        "current-context": "x",
    }
    (tmp_path / "k").write_text(json.dumps(config))
    transport = ApiClientTransport(resolve(str(tmp_path / "k"), None, {}), 1)
    assert transport.authorization() == f"Bearer {id_token}"


def gcp_user(token: str, expires_in: datetime.timedelta) -> Callable[[dict[str, Any]], None]:
    """A user as older gcloud versions wrote it: the gcp auth-provider with a cached token."""
    expiry = datetime.datetime.now(datetime.UTC) + expires_in

    def use(config: dict[str, Any]) -> None:
        provider = {"access-token": token, "expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}
        config["users"][0]["user"] = {"auth-provider": {"name": "gcp", "config": provider}}

    return use


def test_a_gcp_auth_providers_cached_token_is_used_while_it_is_fresh(
    cluster: Cluster, tmp_path: Path
) -> None:
    legacy.fresh_install(cluster)
    exec_account(cluster)
    fresh = gcp_user(cluster.mint_token(*EXEC_ACCOUNT), datetime.timedelta(hours=1))
    result = chain.run_chain(variant(cluster, tmp_path / "gcp", fresh))
    assert result.succeeded, result.output()


def test_an_expired_gcp_token_is_exit_2_naming_the_exec_plugin_to_use(
    cluster: Cluster, tmp_path: Path
) -> None:
    # The package refreshes it only with google-auth, which the images do not ship.
    expired = gcp_user("a-token-that-expired", -datetime.timedelta(hours=1))
    kubeconfig = variant(cluster, tmp_path / "gcp", expired)
    for step in (chain.MIGRATOR, chain.STATUS):
        result = chain.run_in_process(step, kubeconfig)
        assert result.exit_code == 2, result.output
        assert "gcp auth-provider access-token is missing or expired" in result.output
        assert "gke-gcloud-auth-plugin" in result.output and "Traceback" not in result.output
