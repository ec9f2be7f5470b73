"""cp-status against the real control plane: before, during and after the migration."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from cleaner import plan as planning
from common import kyma
from common.cluster.client import resource_path
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, Cluster
from tests.support.cleaning import Audit, install_legacy, mapping

STATUS = "cleaner.status_cli:main"
MIGRATOR = "migrator.cli:main"
BACKUP = "backup.cli:backup_main"
CLEANER = "cleaner.cli:main"


def status(cluster: Cluster) -> dict[str, Any]:
    result = cluster.run(STATUS, "-o", "json")
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def run(cluster: Cluster, step: str) -> None:
    result = cluster.run(step)
    assert result.exit_code == 0, f"{step}: {result.output}"


def operator_deployment() -> dict[str, Any]:
    labels = {"app": "connectivity-proxy-operator"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "connectivity-proxy-operator", "namespace": "kyma-system"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "operator", "image": "example/operator:1"}]},
            },
        },
    }


def test_before_during_and_after_the_migration(cluster: Cluster) -> None:
    install_legacy(cluster)
    cluster.apply([mapping("sm-1"), mapping("sm-2")])

    before = status(cluster)
    assert before["legacy"]["present"] is True
    assert len(before["legacy"]["remaining"]) == len(planning.LEGACY_OBJECTS)
    assert "statefulsets.apps kyma-system/connectivity-proxy" in before["legacy"]["remaining"]
    assert before["crd"]["exists"] is True
    assert before["cr"] == {
        "name": "kyma-system/connectivity-proxy",
        "exists": True,
        "beingDeleted": False,
        "state": None,
        "migrated": False,
        "backedUp": False,
        "cleaned": False,
        "record": None,
    }
    assert before["backup"]["present"] is False
    assert before["serviceMappings"]["total"] == 2
    assert before["serviceMappings"]["handedOver"] == 0
    assert before["operator"]["exists"] is False

    cluster.apply([operator_deployment()])
    run(cluster, MIGRATOR)
    run(cluster, BACKUP)
    during = status(cluster)
    assert during["legacy"]["present"] is True
    assert during["cr"]["migrated"] is True
    assert during["cr"]["backedUp"] is True
    assert during["cr"]["cleaned"] is False
    assert during["cr"]["record"]["step"] == "backup"
    assert during["cr"]["record"]["result"] == "done"
    assert during["cr"]["record"]["reason"] == "Completed"
    assert during["backup"]["present"] is True
    assert during["backup"]["verified"] is True
    assert [item["live"] for item in during["backup"]["items"]] == ["the backup holds its data"] * 2
    assert during["operator"]["exists"] is True

    run(cluster, CLEANER)
    after = status(cluster)
    assert after["legacy"] == {
        "present": False,
        "remaining": [],
        "beingDeleted": [],
        "keptByModule": [],
        "kindsNotServed": [],
    }
    assert after["cr"]["cleaned"] is True
    assert after["cr"]["record"]["step"] == "cleaner"
    assert after["cr"]["record"]["result"] == "done"
    assert after["backup"]["verified"] is True
    assert [item["live"] for item in after["backup"]["items"]] == ["gone", "gone"]
    mappings = after["serviceMappings"]
    assert (mappings["total"], mappings["handedOver"], mappings["notHandedOver"]) == (2, 2, 0)
    assert mappings["crdHandedOver"] is True
    assert after["operator"]["exists"] is True


def test_the_table_is_readable(cluster: Cluster) -> None:
    install_legacy(cluster, istio=False)
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "connectivity-proxy",
                    "namespace": "kyma-system",
                    "labels": {kyma.MANAGED_BY: kyma.MODULE_OPERATOR},
                },
                "spec": {"ports": [{"port": 80}]},
            }
        ]
    )
    result = cluster.run(STATUS)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["WHAT", "STATE"]
    table = dict(line.split("  ", 1) for line in lines[1:8])
    assert table["legacy installation"].strip().startswith("present: ")
    assert "module-owned" in table["legacy installation"]
    assert table["CR kyma-system/connectivity-proxy"].strip() == (
        "exists, state -; migrated no, backed-up no, cleaned no"
    )
    assert table["migration record"].strip() == "none yet (no step has run on this CR)"
    assert table["backup connectivity-proxy-backup"].strip() == "absent"
    assert table["operator Deployment kyma-system/connectivity-proxy-operator"].strip() == "absent"
    assert "remaining legacy objects:" in result.stdout
    assert "  statefulsets.apps kyma-system/connectivity-proxy" in lines
    assert "legacy names the module owns (kept):" in result.stdout


def test_a_tampered_backup_does_not_verify(cluster: Cluster) -> None:
    install_legacy(cluster, istio=False)
    run(cluster, MIGRATOR)
    run(cluster, BACKUP)
    backup = cluster.configmap(kyma.BACKUP_NAMESPACE, "connectivity-proxy-info")
    assert backup is not None
    tampered = copy.deepcopy(backup)
    tampered["data"]["onpremise_proxy_http_port"] = "1"
    cluster.kube.replace(
        resource_path("", "v1", "configmaps", kyma.BACKUP_NAMESPACE, "connectivity-proxy-info"),
        tampered,
    )
    found = status(cluster)
    assert found["backup"]["present"] is True
    assert found["backup"]["verified"] is False
    info = found["backup"]["items"][1]
    assert info["name"] == "connectivity-proxy-info"
    assert "differs from the recorded" in info["digest"]
    table = cluster.run(STATUS).stdout
    assert "present, NOT verified" in table


def test_nothing_installed_at_all(cluster: Cluster) -> None:
    cluster.delete_crd("connectivityproxies.connectivityproxy.sap.com")
    found = status(cluster)
    assert found["legacy"]["present"] is False
    assert found["crd"]["exists"] is False
    assert found["cr"]["exists"] is False
    assert found["backup"]["present"] is False
    assert found["operator"]["exists"] is False


def test_an_unreachable_cluster_is_exit_1(cluster: Cluster, tmp_path: Path) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = "https://127.0.0.1:1"
    broken = tmp_path / "kubeconfig"
    broken.write_text(yaml.safe_dump(config))
    result = Cluster(broken).run(STATUS, env={"CP_RETRY_SECONDS": "0.5"})
    assert result.exit_code == 1, result.output
    assert "no answer from the apiserver" in result.output


def test_status_reads_only(cluster: Cluster) -> None:
    legacy.install(cluster)
    cluster.apply_file(FIXTURES / "legacy-objects.yaml")
    before = cluster.cr()
    audit = Audit(cluster)
    assert cluster.run(STATUS).exit_code == 0
    assert cluster.run(STATUS, "-o", "json").exit_code == 0
    if audit.available:
        sent = audit.requests("cp-migration/status")
        assert sent, "cp-status sent nothing?"
        assert {line.split()[0] for line in sent} <= {"get", "list"}, sent
    after = cluster.cr()
    assert before and after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_runs_as_a_module_with_python_m(cluster: Cluster) -> None:
    legacy.install(cluster)
    result = cluster.run_process("cleaner.status_cli", "-o", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["cr"]["exists"] is True
    assert found["legacy"]["remaining"][0] == "statefulsets.apps kyma-system/connectivity-proxy"
