"""Exec credential plugins as kubectl runs them (issue 21), on the real apiserver: a token is
fetched again only when it (almost) expires, a plugin that hangs ends the run (exit 1) naming
it after CP_EXEC_TIMEOUT, interactiveMode Always without a terminal is exit 2, stdin is closed
under Never, stderr is logged, provideClusterInfo carries certificate-authority-data."""

from __future__ import annotations

import base64
import json
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common.cluster.client import resource_path
from hack.devenv import legacy
from hack.devenv.cluster import AuditWindow, Cluster
from tests.support import chain, reports

ACCOUNT = ("kyma-system", "cp-migration-plugin-test")
MAPPINGS = 400  # enough for a cleaner run of several seconds


def plugin_account(cluster: Cluster) -> str:
    """A ServiceAccount bound to cluster-admin, and a token of it."""
    namespace, name = ACCOUNT
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
    return cluster.mint_token(namespace, name)


def with_plugin(cluster: Cluster, folder: Path, body: str, **spec: Any) -> tuple[Path, Path]:
    """The admin kubeconfig with its user replaced by an exec plugin running `body` (Python;
    `TOKEN` and `emit(seconds)` are defined for it); (kubeconfig, calls file)."""
    token = plugin_account(cluster)
    calls = folder / "calls"
    plugin = folder / "plugin.py"
    plugin.write_text(
        textwrap.dedent(
            f"""
            import datetime, json, os, sys, time
            TOKEN = {token!r}
            with open({str(calls)!r}, "a") as f:
                f.write("x\\n")
            def emit(seconds=None):
                status = {{"token": TOKEN}}
                if seconds is not None:
                    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                        seconds=seconds)
                    status["expirationTimestamp"] = expiry.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1",
                                  "kind": "ExecCredential", "status": status}}))
            """
        )
        + textwrap.dedent(body)
    )
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
            **spec,
        }
    }
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    return kubeconfig, calls


def runs(calls: Path) -> int:
    return len(calls.read_text().split()) if calls.exists() else 0


def test_a_token_is_fetched_again_only_when_it_expires(cluster: Cluster, tmp_path: Path) -> None:
    """A whole cleaner run that outlives several 2 s tokens: the plugin runs about once per
    token's life, never once per request (the package ran it before every request)."""
    legacy.fresh_install(cluster)
    mappings = resource_path(*legacy.SERVICE_MAPPINGS)
    with ThreadPoolExecutor(8) as pool:
        names = [f"sm-{i:04d}" for i in range(MAPPINGS)]
        list(pool.map(lambda n: cluster.kube.create(mappings, legacy.service_mapping(n)), names))
    for step in (chain.MIGRATOR, chain.BACKUP):
        assert chain.run_in_process(step, cluster.kubeconfig).exit_code == 0
    kubeconfig, calls = with_plugin(cluster, tmp_path, "emit(2)\n")
    window = AuditWindow(cluster)
    started = time.monotonic()
    result = chain.run_in_process(chain.CLEANER, kubeconfig)
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    user = "system:serviceaccount:{}:{}".format(*ACCOUNT)
    requests = sum(
        1
        for event in window.events()
        if event.get("stage") == "ResponseComplete"
        and (event.get("user") or {}).get("username") == user
    )
    most = int(seconds / 1.8) + 2  # one per token's life less its margin, and the first
    reports.add(
        "exec plugin runs in one cleaner run (2 s tokens)",
        f"{runs(calls)} plugin runs for {requests or 'uncounted'} requests in {seconds:.1f}s "
        f"(at most {most} allowed)",
    )
    assert 1 <= runs(calls) <= most, (runs(calls), seconds)
    if seconds > 2.5:  # it outlived its first token: that one was fetched again
        assert runs(calls) >= 2, (runs(calls), seconds)
    if window.available:
        assert requests > 5 * runs(calls), (requests, runs(calls))


def test_a_token_without_expiry_is_fetched_once_for_the_whole_chain_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    legacy.fresh_install(cluster)
    kubeconfig, calls = with_plugin(cluster, tmp_path, "emit()\n")
    result = chain.run_in_process(chain.STATUS, kubeconfig)
    assert result.exit_code == 0, result.output
    assert runs(calls) == 1


def test_a_plugin_that_hangs_is_exit_1_naming_it(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig, _ = with_plugin(cluster, tmp_path, "time.sleep(600)\n")
    started = time.monotonic()
    result = chain.run_in_process(chain.STATUS, kubeconfig, env={"CP_EXEC_TIMEOUT": "2"})
    assert result.exit_code == 1, result.output
    assert time.monotonic() - started < 15
    assert "the exec plugin of user admin did not answer within 2s" in result.output
    assert sys.executable in result.output and "Traceback" not in result.output


def test_a_wrong_exec_timeout_is_exit_2(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig, _ = with_plugin(cluster, tmp_path, "emit()\n")
    result = chain.run_in_process(chain.STATUS, kubeconfig, env={"CP_EXEC_TIMEOUT": "soon"})
    assert result.exit_code == 2, result.output
    assert "CP_EXEC_TIMEOUT='soon'" in result.output


def test_interactive_mode_always_without_a_terminal_is_exit_2(
    cluster: Cluster, tmp_path: Path
) -> None:
    kubeconfig, calls = with_plugin(cluster, tmp_path, "emit()\n", interactiveMode="Always")
    result = chain.run_in_process(chain.MIGRATOR, kubeconfig)
    assert result.exit_code == 2, result.output
    assert "interactiveMode: Always" in result.output and "not a terminal" in result.output
    assert runs(calls) == 0


def test_stdin_is_closed_and_stderr_logged(cluster: Cluster, tmp_path: Path) -> None:
    seen = tmp_path / "stdin"
    body = f"""
        with open({str(seen)!r}, "w") as f:
            f.write(os.path.realpath("/proc/self/fd/0") + " " + repr(sys.stdin.read()))
        print("signed in as ops@example.com", file=sys.stderr)
        emit()
    """
    kubeconfig, _ = with_plugin(cluster, tmp_path, body)
    result = chain.run_in_process(chain.STATUS, kubeconfig)
    assert result.exit_code == 0, result.output
    assert seen.read_text() == "/dev/null ''"
    assert "signed in as ops@example.com" in result.output


def test_provide_cluster_info_carries_certificate_authority_data(
    cluster: Cluster, tmp_path: Path
) -> None:
    info = tmp_path / "info"
    body = f"""
        with open({str(info)!r}, "w") as f:
            f.write(os.environ["KUBERNETES_EXEC_INFO"])
        emit()
    """
    kubeconfig, _ = with_plugin(cluster, tmp_path, body, provideClusterInfo=True)
    result = chain.run_in_process(chain.STATUS, kubeconfig)
    assert result.exit_code == 0, result.output
    sent = json.loads(info.read_text())
    admin = json.loads(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    assert sent["spec"]["interactive"] is False
    given = sent["spec"]["cluster"]
    assert given["server"] == admin["server"]
    ca = Path(admin["certificate-authority"]).read_bytes()
    assert base64.b64decode(given["certificate-authority-data"]) == ca
    assert "certificate-authority" not in given


def test_a_refused_credential_is_fetched_again_once(cluster: Cluster, tmp_path: Path) -> None:
    """As client-go: after a 401 the plugin runs again (a revoked token it had cached)."""
    body = f"""
        first = not os.path.exists({str(tmp_path / "seen")!r})
        open({str(tmp_path / "seen")!r}, "w").close()
        if first:
            TOKEN = "revoked-token"
        emit()
    """
    kubeconfig, calls = with_plugin(cluster, tmp_path, body)
    result = chain.run_in_process(chain.STATUS, kubeconfig)
    assert result.exit_code == 0, result.output
    assert runs(calls) == 2
    assert "refused the exec plugin's credential (401)" in result.output
    assert "revoked-token" not in result.output


def test_a_plugin_that_is_not_installed_is_exit_2_with_its_install_hint(
    cluster: Cluster, tmp_path: Path
) -> None:
    hint = "kubelogin is not installed: see https://example.test/kubelogin"
    kubeconfig, _ = with_plugin(
        cluster, tmp_path, "emit()\n", command="cp-no-such-login-plugin", installHint=hint
    )
    result = chain.run_in_process(chain.STATUS, kubeconfig)
    assert result.exit_code == 2, result.output
    assert "cp-no-such-login-plugin" in result.output and hint in result.output
