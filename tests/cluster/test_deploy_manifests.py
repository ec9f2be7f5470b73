"""deploy/: the manifests are accepted by the real apiserver (server-side dry run) and keep the
rules the issue sets: least privilege, the init-container order, a locked-down securityContext."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.errors import ApiError
from hack.devenv.cluster import REPO, Cluster, load_manifests, path_of

DEPLOY = REPO / "deploy"
FILES = ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "deployment.yaml")
STEPS = ("migrator", "backup", "cleaner")


def manifests() -> list[dict[str, Any]]:
    return [obj for name in FILES for obj in load_manifests(DEPLOY / name)]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in manifests() if obj["kind"] == kind]


def test_kustomization_lists_every_manifest() -> None:
    listed = load_manifests(DEPLOY / "kustomization.yaml")[0]["resources"]
    assert sorted(listed) == sorted(FILES)
    assert sorted(p.name for p in DEPLOY.glob("*.yaml")) == sorted([*FILES, "kustomization.yaml"])


def test_the_apiserver_accepts_every_manifest(cluster: Cluster) -> None:
    objects = manifests()
    for obj in objects:  # a real apply creates the Namespace before what goes into it
        namespace = obj["metadata"].get("namespace")
        cluster.ensure_namespace(namespace)
    for obj in objects:
        try:
            cluster.kube.create(
                path_of(obj, with_name=False), obj, dryRun="All", fieldValidation="Strict"
            )
        except ApiError as err:
            if err.status != 409:  # already there (the e2e tests apply them) is fine
                pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {err}")


def test_rbac_is_split_by_step() -> None:
    """Each step has roles of its own (a ClusterRole only where it has cluster-scoped access),
    each bound by a binding of the same name; tests/cluster/test_rbac_*.py prove each set sufficient
    for its step and each single grant in it necessary."""
    roles = {
        (r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"])
        for r in by_kind("ClusterRole") + by_kind("Role")
    }
    assert roles == {
        ("Role", "kyma-system", "cp-migration-migrator"),
        ("ClusterRole", None, "cp-migration-migrator"),
        ("Role", "connectivity-proxy-backup", "cp-migration-migrator"),
        ("ClusterRole", None, "cp-migration-backup"),
        ("Role", "kyma-system", "cp-migration-backup"),
        ("Role", "connectivity-proxy-backup", "cp-migration-backup"),
        ("ClusterRole", None, "cp-migration-cleaner"),
        ("Role", "kyma-system", "cp-migration-cleaner"),
        ("Role", "istio-system", "cp-migration-cleaner"),
        ("Role", "connectivity-proxy-backup", "cp-migration-cleaner"),
    }
    bound = {
        (b["roleRef"]["kind"], b["metadata"].get("namespace"), b["roleRef"]["name"])
        for b in by_kind("ClusterRoleBinding") + by_kind("RoleBinding")
        if b["metadata"]["name"] == b["roleRef"]["name"]
    }
    assert bound == roles


def test_rbac_is_least_privilege() -> None:
    roles = by_kind("ClusterRole") + by_kind("Role")
    assert {r["metadata"].get("namespace") for r in by_kind("Role")} == {
        "kyma-system",
        "istio-system",
        "connectivity-proxy-backup",
    }
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (role["metadata"], rule)
            assert not {"escalate", "bind", "impersonate", "watch"} & set(rule["verbs"])
            # list and create cannot be narrowed by name; everything else is, except the
            # patch of every ServiceMapping (their names are the users').
            if set(rule["verbs"]) - {"list", "create"} and rule["resources"] != ["servicemappings"]:
                assert rule.get("resourceNames"), (role["metadata"], rule)
    # Secrets anywhere, and ConfigMaps and Deployments in the shared kyma-system: read and
    # deleted by name, never listed (a list reads every one; RBAC cannot narrow it by name).
    for role in roles:
        shared = role["kind"] == "ClusterRole" or role["metadata"]["namespace"] == "kyma-system"
        sensitive = {"secrets"} | ({"configmaps", "deployments"} if shared else set())
        for rule in role["rules"]:
            if sensitive & set(rule["resources"]):
                assert rule.get("resourceNames"), (role["metadata"], rule)
                assert "list" not in rule["verbs"], (role["metadata"], rule)
    istio = [r for r in by_kind("Role") if r["metadata"]["namespace"] == "istio-system"]
    secret_verbs = {
        verb
        for role in istio
        for rule in role["rules"]
        if "secrets" in rule["resources"]
        for verb in rule["verbs"]
    }
    assert secret_verbs == {"get", "delete"}
    # Only the backup writes backups (and deletes only an immutable one it replaces); the
    # cleaner only lists them; the migrator reads them by name (a CR created again after the
    # migration is migrated from them) and creates one record of its own: the CR's values a
    # person set that the migration replaces (issue 22).
    expected_in_backup_namespace = {
        "cp-migration-backup": {"list", "update", "create", "delete"},
        "cp-migration-cleaner": {"list"},
        "cp-migration-migrator": {"get", "create"},
    }
    for role in by_kind("Role"):
        if role["metadata"]["namespace"] == "connectivity-proxy-backup":
            verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
            assert verbs == expected_in_backup_namespace[role["metadata"]["name"]], role["metadata"]
    bindings = by_kind("ClusterRoleBinding") + by_kind("RoleBinding")
    assert len(bindings) == len(roles)
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "connectivity-proxy-operator",
                "namespace": "kyma-system",
            }
        ]


def test_deployment_runs_the_three_steps_in_order_locked_down() -> None:
    (deployment,) = by_kind("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == by_kind("ServiceAccount")[0]["metadata"]["name"]
    inits = spec["initContainers"]
    assert [c["name"] for c in inits] == list(STEPS)
    assert [Path(c["image"]).name.split(":")[0] for c in inits] == [f"cp-{s}" for s in STEPS]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in [*inits, *spec["containers"]]:
        context = container["securityContext"]
        assert context["runAsUser"] == 1337
        assert context["runAsNonRoot"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert "emptyDir" in volumes[mount["name"]]
