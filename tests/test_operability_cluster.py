"""Operability against the real control plane (issue 14): YAML 1.1 warnings, cp-status on
Terminating and forbidden objects, signals, progress."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from common import cr as crnames
from common.errors import ApiError
from common.kube import resource_path
from tests.support import chain, legacy
from tests.support.chain import BACKUP, MIGRATOR
from tests.support.cluster import Cluster, ToolResult

STATUS_ENTRY = "cleaner.status_cli:main"

KEY = legacy.CONFIG_KEY
BASE = legacy.legacy_configmap()["data"][KEY]


def test_a_yaml11_reading_is_migrated_with_a_warning_naming_field_and_value(
    cluster: Cluster,
) -> None:
    # 7:23 is 7 * 60 + 23 = 443 in YAML 1.1: valid for the CRD, so migrated, but never silently.
    assert "externalPort: 443" in BASE
    legacy.install(cluster, config_text=BASE.replace("externalPort: 443", "externalPort: 7:23"))
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if "sexagesimal" in line]
    assert line.startswith("WARNING")
    assert ".servers.businessDataTunnel.externalPort" in line
    assert "'7:23'" in line and "the value taken is 443" in line
    cr = cluster.cr()
    assert cr is not None
    assert cr["spec"]["config"]["servers"]["businessDataTunnel"]["externalPort"] == 443


def test_a_configuration_without_surprises_gives_no_yaml11_warning(cluster: Cluster) -> None:
    legacy.install(cluster, config_text=BASE)
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig)
    assert result.exit_code == 0, result.output
    assert "YAML 1.1" not in result.output


# -- cp-status: Terminating, being deleted, forbidden (item 6) ---------------------------------

HOLD = "cp-migration.test/hold"  # a finalizer, as an operator or a person leaves one


def status_of(cluster: Cluster, *args: str, kubeconfig: Path | None = None) -> ToolResult:
    return cluster.run(STATUS_ENTRY, *args, kubeconfig=kubeconfig)


def test_status_shows_a_terminating_backup_namespace_and_objects_being_deleted(
    cluster: Cluster,
) -> None:
    chain.fresh_install(cluster)
    for step in (MIGRATOR, BACKUP):
        assert chain.run_in_process(step, cluster.kubeconfig).exit_code == 0
    held = [
        resource_path("apps", "v1", "statefulsets", "kyma-system", "connectivity-proxy"),
        crnames.CR_PATH,
    ]
    namespace = resource_path("", "v1", "namespaces", name=chain.BACKUP_NAMESPACE)
    try:
        for path in held:
            cluster.kube.merge_patch(path, {"metadata": {"finalizers": [HOLD]}}, retry_safe=True)
            cluster.kube.delete(path)
        # No controller manager: the namespace stays Terminating, its backups still inside.
        cluster.kube.delete(namespace)

        found = json.loads(status_of(cluster, "-o", "json").stdout)
        assert found["backup"]["namespaceState"] == "Terminating"
        assert found["cr"]["beingDeleted"] is True
        assert "statefulsets.apps kyma-system/connectivity-proxy" in found["legacy"]["beingDeleted"]
        result = status_of(cluster)
        assert result.exit_code == 0, result.output
        rows = dict(line.split("  ", 1) for line in result.stdout.splitlines()[1:7])
        backup_row = rows[f"backup {chain.BACKUP_NAMESPACE}"].strip()
        assert backup_row.startswith("namespace Terminating (being deleted)"), backup_row
        assert "being deleted (Terminating)" in rows["CR kyma-system/connectivity-proxy"]
        assert "being deleted" in rows["legacy installation"]
        assert "statefulsets.apps kyma-system/connectivity-proxy  (being deleted)" in (
            result.stdout
        )
    finally:
        for path in held:
            with contextlib.suppress(ApiError):
                cluster.kube.merge_patch(path, {"metadata": {"finalizers": None}}, retry_safe=True)
        cluster.finalize_namespace(chain.BACKUP_NAMESPACE)


def _identity(cluster: Cluster, tmp_path: Path, rules: list[dict[str, Any]]) -> Path:
    name = "cp-status-reader"
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": "kyma-system"},
        }
    ]
    if rules:
        objects += [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": "kyma-system"},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": "kyma-system"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "kyma-system"}],
            },
        ]
    cluster.apply(objects)
    return cluster.token_kubeconfig("kyma-system", name, tmp_path / "kubeconfig")


def test_status_with_every_read_forbidden_says_so_per_row_and_exits_1(
    cluster: Cluster, tmp_path: Path
) -> None:
    legacy.install(cluster)
    kubeconfig = _identity(cluster, tmp_path, [])
    result = status_of(cluster, kubeconfig=kubeconfig)
    assert result.exit_code == 1, result.output
    rows = result.stdout.splitlines()[1:7]
    assert len(rows) == 6
    for row in rows:
        assert "unknown (forbidden: GET " in row, row
    assert "could read nothing" in result.stderr
    result = status_of(cluster, "-o", "json", kubeconfig=kubeconfig)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["cr"]["status"] == 403


def test_status_with_some_reads_forbidden_shows_the_rest_and_exits_0(
    cluster: Cluster, tmp_path: Path
) -> None:
    legacy.install(cluster)
    rules = [
        {
            "apiGroups": ["connectivityproxy.sap.com"],
            "resources": ["connectivityproxies"],
            "verbs": ["get"],
        }
    ]
    result = status_of(cluster, kubeconfig=_identity(cluster, tmp_path, rules))
    assert result.exit_code == 0, result.output
    rows = dict(line.split("  ", 1) for line in result.stdout.splitlines()[1:7])
    assert rows["CR kyma-system/connectivity-proxy"].strip().startswith("exists, state")
    assert (
        "unknown (forbidden: "
        in rows["operator Deployment kyma-system/connectivity-proxy-operator"]
    )
