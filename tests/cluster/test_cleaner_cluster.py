"""cp-cleaner against the real control plane."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cleaner import observe
from cleaner import plan as planning
from common import backups, kyma
from common.backups import content_digest
from common.cluster.client import resource_path
from hack.devenv.cluster import FIXTURES, REPO, Cluster, load_manifests
from tests.support import chain
from tests.support.cleaning import (
    THIRD_PARTY,
    Audit,
    install_legacy,
    mapping,
    wait_discovery,
)

CLEANER = "cleaner.cli:main"
MIGRATOR = "migrator.cli:main"
BACKUP = "backup.cli:backup_main"
CLEANED = "connectivityproxy.sap.com/cleaned"
ISTIO_AND_CERT_CRDS = (
    "gateways.networking.istio.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "envoyfilters.networking.istio.io",
    "peerauthentications.security.istio.io",
    "certificates.cert.gardener.cloud",
)
MAPPING_CRD = "servicemappings.connectivityproxy.sap.com"
MODULE_LABEL = {kyma.MANAGED_BY: kyma.MODULE_OPERATOR}


# -- helpers -----------------------------------------------------------------------------------


def migrate_and_back_up(cluster: Cluster) -> None:
    for step in (MIGRATOR, BACKUP):
        result = cluster.run(step)
        assert result.exit_code == 0, result.output


def path_of(obj: planning.LegacyObject) -> str:
    kind = obj.kind
    return resource_path(kind.group, kind.version, kind.resource, obj.namespace, obj.name)


def exists(cluster: Cluster, obj: planning.LegacyObject) -> bool:
    return cluster.kube.get(path_of(obj)) is not None


def remaining(cluster: Cluster) -> list[str]:
    return [str(obj) for obj in planning.LEGACY_OBJECTS if exists(cluster, obj)]


def cr_annotations(cluster: Cluster) -> dict[str, str]:
    cr = cluster.cr()
    assert cr is not None
    return dict(cr["metadata"].get("annotations") or {})


def mapping_metas(cluster: Cluster) -> list[dict[str, Any]]:
    path = resource_path("connectivityproxy.sap.com", "v1", "servicemappings")
    return [item["metadata"] for item in cluster.kube.list(path)]


def handed_over(meta: dict[str, Any]) -> bool:
    return planning.handover_patch(meta) is None


def fake_backup(cluster: Cluster, name: str) -> dict[str, Any]:
    """A backup as cp-backup makes it, built directly (for tests that need it hand-made)."""
    source = cluster.configmap("kyma-system", name)
    assert source is not None
    backup = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": kyma.BACKUP_NAMESPACE,
            "labels": {kyma.BACKUP_LABEL: kyma.BACKUP_LABEL_VALUE},
            "annotations": {
                kyma.SOURCE_NAMESPACE_ANNOTATION: "kyma-system",
                kyma.SOURCE_NAME_ANNOTATION: name,
                kyma.SOURCE_UID_ANNOTATION: source["metadata"]["uid"],
                kyma.SOURCE_RESOURCE_VERSION_ANNOTATION: source["metadata"]["resourceVersion"],
                kyma.BACKUP_DIGEST_ANNOTATION: content_digest(source),
            },
        },
        "data": copy.deepcopy(source.get("data") or {}),
    }
    cluster.apply([backup])
    return backup


def mark(cluster: Cluster, **values: str) -> None:
    cluster.kube.merge_patch(
        resource_path(
            "connectivityproxy.sap.com",
            "v1",
            "connectivityproxies",
            "kyma-system",
            "connectivity-proxy",
        ),
        {"metadata": {"annotations": values}},
        retry_safe=True,
    )


@pytest.fixture
def installed(cluster: Cluster) -> Cluster:
    """A standard legacy installation, migrated and backed up by the real tools."""
    install_legacy(cluster)
    migrate_and_back_up(cluster)
    return cluster


# -- the whole job -----------------------------------------------------------------------------


def test_cleans_a_standard_installation_and_marks_the_cr(installed: Cluster) -> None:
    cluster = installed
    assert len(remaining(cluster)) == len(planning.LEGACY_OBJECTS) == 35
    audit = Audit(cluster)
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    assert remaining(cluster) == []
    if audit.available:
        sent = audit.requests("cp-migration/cleaner")
        verbs = [line.split()[0] for line in sent]
        # The CR, one discovery, 21 reads of legacy objects (one per kind and namespace, but
        # one GET per name for Secrets, ConfigMaps and Deployments, which are never listed:
        # 4 more than one LIST each), the backups, the ServiceMapping CRD, one rules review per
        # namespace written in (kyma-system, istio-system), 35 DELETEs as a server-side dry
        # run first (the admission preflight), then 35 DELETEs, the CRD hand-over and the
        # mapping LIST, the mark and the Event, the backup namespace (is it Terminating?) and
        # the record (README "Fleet view"): 103, never a GET per object on top.
        dry_runs = [line for line in sent if line.startswith("delete") and "dryRun=All" in line]
        assert len(dry_runs) == 35, sent
        assert verbs.count("delete") == 70, sent
        assert sum("selfsubjectrulesreviews" in line for line in sent) == 2, sent
        assert len(sent) <= 103, "\n".join(sent)
    assert cr_annotations(cluster)[CLEANED] == "true"
    assert "marked kyma-system/connectivity-proxy cleaned" in result.stdout
    assert "deleted: legacy installation object=kyma-system/connectivity-proxy" in result.output
    # The backups stay: they are what cp-restore brings back.
    for name in kyma.SOURCES:
        assert cluster.configmap(kyma.BACKUP_NAMESPACE, name) is not None
    events = cluster.kube.list(resource_path("", "v1", "events", "kyma-system"))
    assert any(event["reason"] == "Cleaned" for event in events)
    crd = cluster.get("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, MAPPING_CRD)
    assert crd is not None and handed_over(crd["metadata"])


def test_a_second_run_changes_nothing(installed: Cluster) -> None:
    cluster = installed
    assert cluster.run(CLEANER).exit_code == 0
    before = cluster.cr()
    again = cluster.run(CLEANER)
    assert again.exit_code == 0
    assert "already cleaned" in again.output
    after = cluster.cr()
    assert before and after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_objects_already_gone_count_as_deleted(installed: Cluster) -> None:
    cluster = installed
    for obj in planning.LEGACY_OBJECTS[::3]:
        if obj not in planning.USER_CONFIG_MAPS:
            cluster.kube.delete(path_of(obj))
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    assert remaining(cluster) == []
    assert cr_annotations(cluster)[CLEANED] == "true"


def test_the_old_cleaned_up_spelling_counts_as_done(installed: Cluster) -> None:
    cluster = installed
    mark(cluster, **{"connectivityproxy.sap.com/cleaned-up": "true"})
    result = cluster.run(CLEANER)
    assert result.exit_code == 0
    assert "already cleaned" in result.output
    assert len(remaining(cluster)) == 35


# -- preconditions -----------------------------------------------------------------------------


def test_no_crd_is_nothing_to_do(cluster: Cluster) -> None:
    cluster.apply_file(FIXTURES / "legacy-objects.yaml")
    cluster.delete_crd("connectivityproxies.connectivityproxy.sap.com")
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    assert "is not installed; nothing to clean" in result.output
    assert len(remaining(cluster)) > 0


def test_no_cr_is_nothing_to_do(cluster: Cluster) -> None:
    install_legacy(cluster, istio=False)
    cluster.kube.delete(
        resource_path(
            "connectivityproxy.sap.com",
            "v1",
            "connectivityproxies",
            "kyma-system",
            "connectivity-proxy",
        )
    )
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    assert "does not exist; nothing to clean" in result.output
    assert exists(cluster, planning.LEGACY_STATEFULSET)


def test_a_cleaner_before_the_backup_is_refused(cluster: Cluster) -> None:
    install_legacy(cluster)
    assert cluster.run(MIGRATOR).exit_code == 0
    result = cluster.run(CLEANER)
    assert result.exit_code == 3, result.output
    assert "migrated but not backed up" in result.output
    assert "Run cp-backup first" in result.output
    assert len(remaining(cluster)) == 35
    assert CLEANED not in cr_annotations(cluster)
    assert_the_restarted_chain_converges(cluster, result.output)


def test_a_legacy_installation_not_migrated_is_refused(cluster: Cluster) -> None:
    install_legacy(cluster)
    result = cluster.run(CLEANER)
    assert result.exit_code == 3, result.output
    assert "Run cp-migrator and cp-backup first" in result.output
    assert len(remaining(cluster)) == 35
    assert CLEANED not in cr_annotations(cluster)
    assert_the_restarted_chain_converges(cluster, result.output)


def assert_the_restarted_chain_converges(cluster: Cluster, message: str) -> None:
    """The remedy the refusal names: a restarted operator Pod runs the chain from the start."""
    assert "kubectl rollout restart deployment -n kyma-system connectivity-proxy-operator" in (
        message
    )
    for step in (MIGRATOR, BACKUP, CLEANER):
        outcome = cluster.run(step)
        assert outcome.exit_code == 0, outcome.output
    assert remaining(cluster) == []
    assert cr_annotations(cluster)[CLEANED] == "true"


# -- deletion rules ----------------------------------------------------------------------------


def test_only_the_istio_gateway_goes_not_a_gateway_api_one(installed: Cluster) -> None:
    cluster = installed
    gateway_api = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "kyma-gateway-cc", "namespace": "kyma-system"},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [{"name": "h", "port": 80, "protocol": "HTTP"}],
        },
    }
    cluster.apply([gateway_api])
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    assert (
        cluster.get("networking.istio.io", "v1beta1", "gateways", "kyma-system", "kyma-gateway-cc")
        is None
    )
    assert (
        cluster.get("gateway.networking.k8s.io", "v1", "gateways", "kyma-system", "kyma-gateway-cc")
        is not None
    )


def test_no_istio_or_cert_crds_at_all_is_success(cluster: Cluster) -> None:
    for name in ISTIO_AND_CERT_CRDS:
        if cluster.get("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, name):
            cluster.delete_crd(name)
    wait_discovery(
        cluster,
        {(name.partition(".")[2], name.partition(".")[0]) for name in ISTIO_AND_CERT_CRDS},
        served=False,
    )
    install_legacy(cluster, istio=False)
    migrate_and_back_up(cluster)
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    assert "kind not served by this cluster; skipped kind=gateways.networking.istio.io" in (
        result.output
    )
    assert "kind=certificates.cert.gardener.cloud" in result.output
    served_kinds = [
        obj
        for obj in planning.LEGACY_OBJECTS
        if obj.kind.group not in {"networking.istio.io", "security.istio.io", "cert.gardener.cloud"}
    ]
    assert [str(obj) for obj in served_kinds if exists(cluster, obj)] == []
    assert cr_annotations(cluster)[CLEANED] == "true"


def test_module_owned_objects_with_legacy_names_are_kept(cluster: Cluster) -> None:
    install_legacy(cluster)
    migrate_and_back_up(cluster)
    cr = cluster.cr()
    assert cr is not None
    labelled = planning.LegacyObject(planning.SERVICES, "kyma-system", "connectivity-proxy")
    cluster.kube.merge_patch(
        path_of(labelled), {"metadata": {"labels": MODULE_LABEL}}, retry_safe=True
    )
    owned = planning.LegacyObject(planning.STATEFULSETS, "kyma-system", "connectivity-proxy")
    owner = {
        "apiVersion": "connectivityproxy.sap.com/v1",
        "kind": "ConnectivityProxy",
        "name": "connectivity-proxy",
        "uid": cr["metadata"]["uid"],
    }
    cluster.kube.merge_patch(
        path_of(owned), {"metadata": {"ownerReferences": [owner]}}, retry_safe=True
    )
    dry = cluster.run(CLEANER, "--dry-run")
    assert dry.exit_code == 0, dry.output
    kept_section = dry.stdout.split("kept (")[1]
    assert "services kyma-system/connectivity-proxy  (owned by the module (label" in kept_section
    assert "statefulsets.apps kyma-system/connectivity-proxy  (owned by the module (ownerRef" in (
        kept_section
    )
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    assert remaining(cluster) == [str(owned), str(labelled)]
    assert "kept: owned by the module" in result.output
    assert cr_annotations(cluster)[CLEANED] == "true"


@pytest.mark.parametrize("change", ["labels", "replace"])
def test_a_configmap_whose_data_is_unchanged_is_deleted(installed: Cluster, change: str) -> None:
    """A controller relabelling it, or a person recreating it with the same data: its backup
    still holds its configuration, so it goes (no circle of "take a new backup")."""
    cluster = installed
    path = resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy-info")
    if change == "labels":
        cluster.kube.merge_patch(
            path, {"metadata": {"labels": {"touched-by": "a-controller"}}}, retry_safe=True
        )
    else:
        current = cluster.kube.get(path)
        assert current is not None
        cluster.kube.delete(path)
        cluster.apply(
            [
                {k: v for k, v in current.items() if k != "metadata"}
                | {"metadata": {"name": "connectivity-proxy-info", "namespace": "kyma-system"}}
            ]
        )
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    assert remaining(cluster) == []
    assert cr_annotations(cluster)[CLEANED] == "true"


def test_a_configmap_whose_data_changed_after_the_migration_is_refused_and_the_remedy_works(
    installed: Cluster,
) -> None:
    cluster = installed
    path = resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy-info")
    cluster.kube.merge_patch(
        path, {"data": {"onpremise_proxy_http_port": "20005"}}, retry_safe=True
    )
    result = cluster.run(CLEANER)
    assert result.exit_code == 3, result.output
    assert (
        "ConfigMap kyma-system/connectivity-proxy-info: its data changed after it was migrated"
        in result.output
    )
    assert "nothing was deleted" in result.output
    assert len(remaining(cluster)) == 35
    assert CLEANED not in cr_annotations(cluster)
    # The remedy the message names: remove both marks, then the chain runs again.
    assert "connectivityproxy.sap.com/migrated- connectivityproxy.sap.com/backed-up-" in (
        result.output
    )
    mark_removed = {"connectivityproxy.sap.com/migrated": None}
    mark_removed["connectivityproxy.sap.com/backed-up"] = None
    cluster.kube.merge_patch(
        resource_path(
            "connectivityproxy.sap.com",
            "v1",
            "connectivityproxies",
            "kyma-system",
            "connectivity-proxy",
        ),
        {"metadata": {"annotations": mark_removed}},
        retry_safe=True,
    )
    for step in (MIGRATOR, BACKUP, CLEANER):
        outcome = cluster.run(step)
        assert outcome.exit_code == 0, outcome.output
    assert remaining(cluster) == []
    cr = cluster.cr()
    assert cr and cr["spec"]["config"]["servers"]["proxy"]["http"]["port"] == 20005


def test_a_configmap_without_a_sound_backup_is_refused(cluster: Cluster) -> None:
    install_legacy(cluster, istio=False)
    assert cluster.run(MIGRATOR).exit_code == 0
    backup = fake_backup(cluster, "connectivity-proxy")  # and none of connectivity-proxy-info
    tampered = copy.deepcopy(backup)
    tampered["data"][kyma.CONFIG_KEY] += "\n# edited"
    cluster.apply([tampered])
    mark(cluster, **{"connectivityproxy.sap.com/backed-up": "true"})
    result = cluster.run(CLEANER)
    assert result.exit_code == 3, result.output
    assert "ConfigMap kyma-system/connectivity-proxy: its backup" in result.output
    assert "is not a verified copy" in result.output
    assert "ConfigMap kyma-system/connectivity-proxy-info: it has no backup" in result.output
    assert exists(cluster, planning.LEGACY_STATEFULSET)
    # The remedy: cp-backup keeps the edited copy under another name and makes its own.
    assert_the_restarted_chain_converges(cluster, result.output)
    preserved = [
        item
        for item in cluster.kube.list(resource_path("", "v1", "configmaps", kyma.BACKUP_NAMESPACE))
        if backups.is_preserved(item)
    ]
    assert [item["data"] for item in preserved] == [tampered["data"]]


def test_hand_made_backups_are_honoured(cluster: Cluster) -> None:
    install_legacy(cluster, istio=False)
    assert cluster.run(MIGRATOR).exit_code == 0
    for name in kyma.SOURCES:
        fake_backup(cluster, name)
    mark(cluster, **{"connectivityproxy.sap.com/backed-up": "true"})
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    for name in kyma.SOURCES:
        assert cluster.configmap("kyma-system", name) is None


def test_dry_run_prints_three_lists_and_changes_nothing(installed: Cluster) -> None:
    cluster = installed
    cluster.apply([mapping("sm-dry")])
    before = cluster.cr()
    result = cluster.run(CLEANER, "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "would delete (35):" in out
    assert "gateways.networking.istio.io kyma-system/kyma-gateway-cc" in out
    assert "would patch (2):" in out
    assert "servicemappings.connectivityproxy.sap.com sm-dry" in out
    assert "kept (0):" in out
    assert "nothing changed" in out
    assert len(remaining(cluster)) == 35
    assert not handed_over(mapping_metas(cluster)[0])
    after = cluster.cr()
    assert before and after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_dry_run_of_a_refused_run_shows_the_lists_and_exits_3(installed: Cluster) -> None:
    cluster = installed
    cluster.kube.merge_patch(
        resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy"),
        {"data": {"extra": "x"}},
        retry_safe=True,
    )
    result = cluster.run(CLEANER, "--dry-run")
    assert result.exit_code == 3, result.output
    assert "configmaps kyma-system/connectivity-proxy  (its data changed after it was migrated" in (
        result.stdout
    )
    assert "would delete (34):" in result.stdout


# -- ServiceMappings ---------------------------------------------------------------------------


def test_service_mappings_are_handed_over_in_pages(
    installed: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = installed
    monkeypatch.setattr(observe, "PAGE_SIZE", 2)
    right = mapping(
        "sm-right",
        labels=MODULE_LABEL,
        annotations=dict(planning.HANDOVER_ANNOTATIONS),
    )
    partly = mapping("sm-partly", labels={**MODULE_LABEL, "team": "a"})
    cluster.apply([right, partly, *(mapping(f"sm-{i}") for i in range(5))])
    untouched = {m["name"]: m["resourceVersion"] for m in mapping_metas(cluster)}["sm-right"]
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    metas = mapping_metas(cluster)
    assert len(metas) == 7
    assert all(handed_over(meta) for meta in metas)
    by_name = {meta["name"]: meta for meta in metas}
    assert by_name["sm-right"]["resourceVersion"] == untouched  # already right: not written
    assert by_name["sm-partly"]["labels"]["team"] == "a"
    assert "total=7 patched=6 already=1" in result.output


@pytest.fixture
def namespaced_mappings(cluster: Cluster) -> Iterator[Cluster]:
    """The ServiceMapping CRD with Namespaced scope (scope is immutable: delete, recreate,
    and delete again afterwards so later tests get the cluster-scoped fixture back)."""
    crd = next(doc for doc in load_manifests(THIRD_PARTY) if doc["metadata"]["name"] == MAPPING_CRD)
    crd["spec"]["scope"] = "Namespaced"
    if cluster.get("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, MAPPING_CRD):
        cluster.delete_crd(MAPPING_CRD)
    cluster.apply([crd])
    try:
        yield cluster
    finally:
        cluster.delete_crd(MAPPING_CRD)


def test_namespaced_service_mappings_are_listed_across_namespaces(
    namespaced_mappings: Cluster,
) -> None:
    cluster = namespaced_mappings
    install_legacy(cluster, istio=False)
    migrate_and_back_up(cluster)
    cluster.apply([mapping("sm-a", "kyma-system"), mapping("sm-b", "istio-system")])
    result = cluster.run(CLEANER)
    assert result.exit_code == 0, result.output
    metas = mapping_metas(cluster)
    assert sorted(meta["namespace"] for meta in metas) == ["istio-system", "kyma-system"]
    assert all(handed_over(meta) for meta in metas)
    assert "scope=Namespaced" in result.output


# -- the whole chain -----------------------------------------------------------------------------


def test_full_chain_then_a_rerun_of_all_three_changes_nothing(cluster: Cluster) -> None:
    install_legacy(cluster)
    cluster.apply([mapping("sm-chain")])
    for step in (MIGRATOR, BACKUP, CLEANER):
        result = cluster.run(step)
        assert result.exit_code == 0, f"{step}: {result.output}"
    assert remaining(cluster) == []
    cr = cluster.cr()
    assert cr is not None
    stored = {name: cluster.configmap(kyma.BACKUP_NAMESPACE, name) for name in kyma.SOURCES}
    for step in (MIGRATOR, BACKUP, CLEANER):
        result = cluster.run(step)
        assert result.exit_code == 0, f"{step}: {result.output}"
    again = cluster.cr()
    assert again is not None
    assert again["metadata"]["resourceVersion"] == cr["metadata"]["resourceVersion"]
    assert {name: cluster.configmap(kyma.BACKUP_NAMESPACE, name) for name in kyma.SOURCES} == stored
    assert all(handed_over(meta) for meta in mapping_metas(cluster))


def test_runs_as_a_module_with_python_m(installed: Cluster) -> None:
    result = installed.run_process("cleaner", "--log-format", "json")
    assert result.exit_code == 0, result.output
    assert remaining(installed) == []
    assert '"object": "kyma-system/connectivity-proxy"' in result.stderr


# -- permissions ---------------------------------------------------------------------------------

DEPLOY = REPO / "deploy"
SERVICE_ACCOUNT = ("kyma-system", "connectivity-proxy-operator")


def deploy_rbac_without(cluster: Cluster, matches: Callable[[dict[str, Any]], bool]) -> None:
    """deploy/'s ServiceAccount and RBAC, minus the rules `matches` picks (at most one)."""
    objects = [
        obj
        for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml")
        for obj in load_manifests(DEPLOY / name)
    ]
    removed = 0
    for obj in objects:
        if obj["kind"] in ("Role", "ClusterRole"):
            kept = [rule for rule in obj["rules"] if not matches(rule)]
            removed += len(obj["rules"]) - len(kept)
            obj["rules"] = kept
    assert removed <= 1, "the test means to remove one rule at most"
    cluster.apply(objects)


def service_account_kubeconfig(cluster: Cluster, folder: Path) -> Path:
    """A kubeconfig for deploy/'s ServiceAccount, with a token minted by the apiserver."""
    namespace, name = SERVICE_ACCOUNT
    return cluster.token_kubeconfig(namespace, name, folder / "kubeconfig", seconds=600)


@pytest.mark.parametrize(
    ("rule", "missing"),
    [
        (
            lambda r: (
                r["resources"] == ["secrets"]
                and r.get("resourceNames") == ["cc-certs-cacert", "cc-certs"]
                and r["verbs"] == ["delete"]
            ),
            ['cannot delete resource "secrets" in API group "": secrets istio-system/cc-certs'],
        ),
        (
            lambda r: r["resources"] == ["clusterroles"] and r["verbs"] == ["delete"],
            [
                'cannot delete resource "clusterroles" in API group "rbac.authorization.k8s.io": '
                "clusterroles.rbac.authorization.k8s.io connectivity-proxy-restart-watcher"
            ],
        ),
        (lambda r: False, []),
    ],
    ids=["istio-secrets", "clusterroles", "all-granted"],
)
def test_a_missing_delete_permission_stops_the_cleaner_before_any_write(
    installed: Cluster, tmp_path: Path, rule: Callable[[dict[str, Any]], bool], missing: list[str]
) -> None:
    """deploy/'s RBAC minus one delete rule (get or list still granted, so every read works):
    the permission preflight exits 1 naming verb, resource and object, and nothing is written:
    no object deleted, no ServiceMapping or CRD handed over, the CR not marked."""
    cluster = installed
    cluster.apply([mapping("sm-rbac")])
    deploy_rbac_without(cluster, rule)
    as_service_account = Cluster(service_account_kubeconfig(cluster, tmp_path))
    before = cluster.cr()
    assert before is not None
    result = as_service_account.run(CLEANER)
    if not missing:  # deploy/'s RBAC as it is: every planned write is allowed
        assert result.exit_code == 0, result.output
        assert remaining(cluster) == []
        return
    assert result.exit_code == 1, result.output
    assert "planned write(s); nothing was changed" in result.output
    for line in missing:
        assert line in result.output
    assert "403" not in result.output  # stopped by the preflight, not by a refused write
    assert len(remaining(cluster)) == 35, "the cleaner deleted something"
    after = cluster.cr()
    assert after is not None
    assert chain.cr_version(after) == chain.cr_version(before)  # but the record
    assert not any(handed_over(meta) for meta in mapping_metas(cluster))
    crd = cluster.get("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, MAPPING_CRD)
    assert crd is not None and not handed_over(crd["metadata"])
