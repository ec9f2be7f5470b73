"""Pure units: the cleaner's planning and cp-status's rendering (no cluster)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from cleaner import observe
from cleaner import plan as planning
from cleaner.status.model import (
    Backup,
    Cr,
    Crd,
    Operator,
    ServiceMappings,
    Status,
    Unreadable,
)
from cleaner.status.render import render_table
from common import backups, kyma, reasons
from common.backups import content_digest
from common.cr import skip_reason
from common.errors import RefusedError
from common.legacy import owned_by_module
from hack.devenv.cluster import REPO

MIGRATED = {"connectivityproxy.sap.com/migrated": "true"}
BACKED_UP = {"connectivityproxy.sap.com/backed-up": "true"}
SERVED_ALL: dict[tuple[str, str], tuple[str, ...]] = {
    (kind.group, kind.resource): (kind.version,)
    for kind, _, _ in planning.LEGACY_TABLE
    if kind.group
}


def cr(**annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": "connectivity-proxy", "annotations": annotations}}


def meta(name: str, uid: str | None = None, rv: str = "10", **extra: Any) -> dict[str, Any]:
    return {"name": name, "uid": uid or f"uid-{name}", "resourceVersion": rv, **extra}


def backup_of(name: str, uid: str, rv: str, data: dict[str, str]) -> dict[str, Any]:
    source = {"data": data}
    return {
        "metadata": {
            "name": name,
            "labels": {kyma.BACKUP_LABEL: kyma.BACKUP_LABEL_VALUE},
            "annotations": {
                kyma.SOURCE_NAMESPACE_ANNOTATION: "kyma-system",
                kyma.SOURCE_NAME_ANNOTATION: name,
                kyma.SOURCE_UID_ANNOTATION: uid,
                kyma.SOURCE_RESOURCE_VERSION_ANNOTATION: rv,
                kyma.BACKUP_DIGEST_ANNOTATION: content_digest(source),
            },
        },
        "data": data,
    }


def everything_found() -> dict[planning.LegacyObject, dict[str, Any] | None]:
    return {obj: meta(obj.name, uid=f"uid-{obj}") for obj in planning.LEGACY_OBJECTS}


def inputs(**overrides: Any) -> planning.Inputs:
    found = everything_found()
    values: dict[str, Any] = {
        "cr": cr(**MIGRATED, **BACKED_UP),
        "found": found,
        "versions": {obj.kind: obj.kind.version for obj in found},
        "backups": {
            name: backup_of(name, f"uid-{obj}", "10", {})
            for obj in planning.USER_CONFIG_MAPS
            for name in [obj.name]
        },
        "backup_namespace": {"metadata": {"name": kyma.BACKUP_NAMESPACE}},
        "live_digests": {name: content_digest({"data": {}}) for name in kyma.SOURCES},
    }
    values.update(overrides)
    return planning.Inputs(**values)


# -- the table -------------------------------------------------------------------------------


def test_the_table_names_every_object_of_the_issue_once() -> None:
    objects = planning.LEGACY_OBJECTS
    assert len(objects) == 35
    assert len(set(objects)) == 35
    by_kind = {(o.kind.name, o.namespace, o.name) for o in objects}
    assert ("gateways.networking.istio.io", "kyma-system", "kyma-gateway-cc") in by_kind
    assert ("certificates.cert.gardener.cloud", "istio-system", "cc-certs") in by_kind
    assert ("secrets", "istio-system", "cc-certs") in by_kind
    assert (
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        None,
        "webhook-secret",
    ) in (by_kind)
    # No gateway or certificate of another group is ever addressed.
    assert not any(o.kind.group.startswith("gateway.networking.k8s.io") for o in objects)


def test_namespaced_kinds_have_a_namespace_and_cluster_kinds_none() -> None:
    for obj in planning.LEGACY_OBJECTS:
        assert (obj.namespace is not None) == obj.kind.namespaced, obj


# -- discovery and reads -------------------------------------------------------------------------


def test_served_version_prefers_the_table_then_any_served_one() -> None:
    kind = planning.ISTIO_GATEWAYS
    assert planning.served_version(
        kind, {("networking.istio.io", "gateways"): ("v1", "v1beta1")}
    ) == ("v1beta1")
    assert planning.served_version(kind, {("networking.istio.io", "gateways"): ("v1",)}) == "v1"
    assert (
        planning.served_version(kind, {("gateway.networking.k8s.io", "gateways"): ("v1",)}) is None
    )
    assert planning.served_version(planning.SECRETS, {}) == "v1"  # core is always served


def test_reads_group_names_by_kind_and_namespace_and_skip_unserved_kinds() -> None:
    served = {
        key: value
        for key, value in SERVED_ALL.items()
        if key[0] not in {"networking.istio.io", "security.istio.io", "cert.gardener.cloud"}
    }
    reads, skipped = planning.reads(served)
    assert {kind.group for kind in skipped} == {
        "networking.istio.io",
        "security.istio.io",
        "cert.gardener.cloud",
    }
    assert len(skipped) == 6
    by_key = {(r.kind.resource, r.namespace): r for r in reads}
    services = by_key[("services", "kyma-system")]
    assert services.by_list and len(services.names) == 5
    statefulset = by_key[("statefulsets", "kyma-system")]
    assert not statefulset.by_list
    # Secrets, ConfigMaps and Deployments are read by name (one GET each), never listed.
    for read in reads:
        if read.kind in planning.READ_BY_NAME:
            assert not read.by_list and len(read.names) == 1, read
    secrets = [r for r in reads if r.kind == planning.SECRETS]
    assert sorted((r.namespace, r.names[0]) for r in secrets) == [
        ("istio-system", "cc-certs"),
        ("istio-system", "cc-certs-cacert"),
        ("kyma-system", "connectivity-sm-operator-secrets-tls"),
    ]
    assert sum(len(r.names) for r in reads) == 35 - 8  # 8 Istio and cert objects


def test_a_standard_install_takes_21_reads_of_which_6_lists() -> None:
    # 17 (resource, namespace) pairs; Secrets in istio-system (2 names), ConfigMaps (3) and
    # Deployments (2) cost 4 GETs more than one LIST each would.
    reads, skipped = planning.reads(SERVED_ALL)
    assert not skipped
    assert len(reads) == 21
    assert sorted(r.kind.resource for r in reads if r.by_list) == [
        "clusterrolebindings",
        "clusterroles",
        "destinationrules",
        "serviceaccounts",
        "services",
        "virtualservices",
    ]


def test_aggregated_discovery_is_parsed_preferred_version_first() -> None:
    answer = {
        "kind": "APIGroupDiscoveryList",
        "items": [
            {
                "metadata": {"name": "networking.istio.io"},
                "versions": [
                    {"version": "v1", "resources": [{"resource": "gateways"}]},
                    {"version": "v1beta1", "resources": [{"resource": "gateways"}]},
                ],
            },
            {
                "metadata": {"name": "gateway.networking.k8s.io"},
                "versions": [{"version": "v1", "resources": [{"resource": "gateways"}]}],
            },
        ],
    }
    served = observe.served_from_aggregated(answer)
    assert served[("networking.istio.io", "gateways")] == ("v1", "v1beta1")
    assert served[("gateway.networking.k8s.io", "gateways")] == ("v1",)


# -- ownership and hand-over ---------------------------------------------------------------------


def test_module_ownership_by_label_or_owner_reference() -> None:
    assert owned_by_module({"labels": {kyma.MANAGED_BY: kyma.MODULE_OPERATOR}})
    owner = {"apiVersion": "connectivityproxy.sap.com/v1", "kind": "ConnectivityProxy", "name": "x"}
    assert owned_by_module({"ownerReferences": [owner]})
    assert owned_by_module({"labels": {kyma.MANAGED_BY: "Helm"}}) is None
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"}
    assert owned_by_module({"ownerReferences": [other]}) is None
    wrong_group = {**owner, "apiVersion": "example.com/v1"}
    assert owned_by_module({"ownerReferences": [wrong_group]}) is None


def test_handover_patch_sets_only_what_is_missing() -> None:
    full = planning.handover_patch({})
    assert full == {
        "metadata": {
            "labels": {kyma.MANAGED_BY: kyma.MODULE_OPERATOR},
            "annotations": {
                "io.javaoperatorsdk/primary-name": "connectivity-proxy",
                "io.javaoperatorsdk/primary-namespace": "kyma-system",
            },
        }
    }
    labelled = {"labels": {kyma.MANAGED_BY: kyma.MODULE_OPERATOR, "team": "a"}}
    assert planning.handover_patch(labelled) == {
        "metadata": {"annotations": full["metadata"]["annotations"]}
    }
    right = {
        "labels": dict(planning.HANDOVER_LABELS),
        "annotations": {**planning.HANDOVER_ANNOTATIONS, "other": "x"},
    }
    assert planning.handover_patch(right) is None
    wrong = {**right, "annotations": {**planning.HANDOVER_ANNOTATIONS, planning.PRIMARY_NAME: "x"}}
    assert planning.handover_patch(wrong) == {
        "metadata": {"annotations": {planning.PRIMARY_NAME: "connectivity-proxy"}}
    }


def test_mapping_version_is_the_served_storage_version() -> None:
    crd = {
        "spec": {
            "versions": [
                {"name": "v1alpha1", "served": True, "storage": False},
                {"name": "v1", "served": True, "storage": True},
                {"name": "v2", "served": False, "storage": False},
            ]
        }
    }
    assert planning.mapping_version(crd) == "v1"
    assert (
        planning.mapping_version({"spec": {"versions": [{"name": "v1", "served": False}]}}) is None
    )


# -- the gate ------------------------------------------------------------------------------------


def test_skip_reasons() -> None:
    assert "not installed" in (skip_reason(False, None, step="clean") or "")
    assert "does not exist" in (skip_reason(True, None, step="clean") or "")
    cleaned = cr(**{"connectivityproxy.sap.com/cleaned": "true"})
    assert "already cleaned" in (skip_reason(True, cleaned, step="clean") or "")
    old = cr(**{"connectivityproxy.sap.com/cleaned-up": "true"})
    assert "already cleaned" in (skip_reason(True, old, step="clean") or "")
    assert (
        skip_reason(True, cr(**{"connectivityproxy.sap.com/cleaned": "false"}), step="clean")
        is None
    )


def test_migrated_but_not_backed_up_is_refused() -> None:
    assert "Run cp-backup first" in (planning.refusal_before_backup(cr(**MIGRATED)) or "")
    assert planning.refusal_before_backup(cr(**MIGRATED, **BACKED_UP)) is None
    assert planning.refusal_before_backup(cr()) is None


# -- the plan ------------------------------------------------------------------------------------


def test_everything_is_deleted_with_the_webhook_first() -> None:
    plan = planning.plan(inputs())
    assert plan.refusals == []
    assert [d.target.kind for d in plan.deletes_first] == [planning.VALIDATING_WEBHOOKS]
    assert len(plan.all_deletes) == 35
    assert all(d.uid == f"uid-{d.target}" for d in plan.all_deletes)
    user_config = [d for d in plan.all_deletes if d.target in planning.USER_CONFIG_MAPS]
    assert len(user_config) == 2
    assert all(d.resource_version == "10" for d in user_config)
    assert all(
        d.resource_version is None
        for d in plan.all_deletes
        if d.target not in planning.USER_CONFIG_MAPS
    )


def test_absent_and_terminating_objects_need_nothing() -> None:
    found = everything_found()
    sts = planning.LEGACY_STATEFULSET
    secret = planning.LegacyObject(planning.SECRETS, "istio-system", "cc-certs")
    found[sts] = None
    found[secret] = meta("cc-certs", deletionTimestamp="2026-01-01T00:00:00Z")
    plan = planning.plan(inputs(found=found))
    assert set(plan.gone) == {sts, secret}
    assert len(plan.all_deletes) == 33


def test_module_owned_objects_are_kept_with_the_reason() -> None:
    found = everything_found()
    service = planning.LegacyObject(planning.SERVICES, "kyma-system", "connectivity-proxy")
    found[service] = meta(service.name, labels={kyma.MANAGED_BY: kyma.MODULE_OPERATOR})
    configmap = planning.LegacyObject(planning.CONFIG_MAPS, "kyma-system", "connectivity-proxy")
    owner = {"apiVersion": "connectivityproxy.sap.com/v1", "kind": "ConnectivityProxy", "name": "c"}
    # Module-owned beats "changed after the backup": it is simply not ours to delete.
    found[configmap] = meta(configmap.name, uid="new", ownerReferences=[owner])
    plan = planning.plan(inputs(found=found))
    assert plan.refusals == []
    kept = {k.what: k.reason for k in plan.kept}
    assert "label app.kubernetes.io/managed-by" in kept[str(service)]
    assert "ownerReference to ConnectivityProxy c" in kept[str(configmap)]
    assert service not in {d.target for d in plan.all_deletes}


def test_user_config_with_only_its_metadata_changed_is_deleted() -> None:
    found = everything_found()
    info = planning.LegacyObject(planning.CONFIG_MAPS, "kyma-system", "connectivity-proxy-info")
    found[info] = meta(info.name, rv="11", labels={"touched": "by-a-controller"})
    plan = planning.plan(inputs(found=found))
    assert plan.refusals == [] and plan.waits == []
    deleted = {d.target: d for d in plan.all_deletes}
    assert deleted[info].resource_version == "11"  # the version read: a later change is a 409


def test_user_config_whose_data_changed_after_the_migration_is_refused_with_the_remedy() -> None:
    name = "connectivity-proxy-info"
    migrated = cr(**MIGRATED, **BACKED_UP)
    migrated["metadata"]["annotations"][kyma.MIGRATED_DIGESTS_ANNOTATION] = backups.format_digests(
        {name: content_digest({"data": {}})}
    )
    changed = {"connectivity-proxy": content_digest({"data": {}}), name: "sha256:other"}
    plan = planning.plan(inputs(cr=migrated, live_digests=changed))
    assert len(plan.refusals) == 1
    assert plan.refusals[0].startswith(f"ConfigMap kyma-system/{name}: ")
    assert "changed after it was migrated" in plan.refusals[0]
    assert "connectivityproxy.sap.com/migrated-" in plan.refusals[0]
    # Without a record of what was migrated (the original Go migrator), a difference from the
    # backup is refused the same way: nobody can tell which one the CR holds.
    plan = planning.plan(inputs(live_digests=changed))
    assert "does not record what was migrated" in plan.refusals[0]


def test_user_config_without_a_sound_backup_is_refused() -> None:
    name = "connectivity-proxy"
    tampered = backup_of(name, "uid-configmaps kyma-system/connectivity-proxy", "10", {"a": "b"})
    tampered["data"] = {"a": "changed"}
    plan = planning.plan(inputs(backups={name: tampered, "connectivity-proxy-info": None}))
    assert len(plan.refusals) == 2
    assert "not a verified copy" in plan.refusals[0]
    assert "has no backup" in plan.refusals[1]
    assert all("cp-backup" in refusal for refusal in plan.refusals)


def test_user_config_is_kept_while_the_backup_namespace_is_terminating() -> None:
    terminating = {"metadata": {"name": kyma.BACKUP_NAMESPACE, "deletionTimestamp": "2026-01-01"}}
    plan = planning.plan(inputs(backup_namespace=terminating))
    assert plan.refusals == [] and len(plan.waits) == 2
    assert "Terminating" in plan.waits[0]
    # The fleet counts this cause under one code, whichever step meets it (README "Fleet view").
    assert plan.wait_reason == reasons.BACKUP_NAMESPACE_TERMINATING
    assert not {d.target for d in plan.all_deletes} & planning.USER_CONFIG_MAPS
    plan = planning.plan(inputs(backup_namespace=None))
    assert len(plan.refusals) == 2 and "does not exist" in plan.refusals[0]


def test_user_config_already_gone_needs_no_backup() -> None:
    found = everything_found()
    for obj in planning.USER_CONFIG_MAPS:
        found[obj] = None
    plan = planning.plan(inputs(found=found, backups={}, backup_namespace=None))
    assert plan.refusals == []


def test_an_unmigrated_cr_is_never_cleaned() -> None:
    legacy_sts = {"metadata": {"name": "connectivity-proxy", "annotations": {"x": "y"}}}
    with pytest.raises(RefusedError, match="Run cp-migrator and cp-backup first"):
        planning.not_migrated(cr(), legacy_sts)
    assert "nothing to clean" in (planning.not_migrated(cr(), None) or "")
    module_sts = {"metadata": {"labels": {kyma.MANAGED_BY: kyma.MODULE_OPERATOR}}}
    assert "nothing to clean" in (planning.not_migrated(cr(), module_sts) or "")
    assert planning.not_migrated(cr(**MIGRATED), legacy_sts) is None


def test_unserved_kinds_are_listed_as_kept() -> None:
    found = {
        obj: m
        for obj, m in everything_found().items()
        if obj.kind != planning.GARDENER_CERTIFICATES
    }
    plan = planning.plan(inputs(found=found, skipped_kinds=(planning.GARDENER_CERTIFICATES,)))
    assert plan.kept == []
    assert plan.skipped_kinds == [planning.GARDENER_CERTIFICATES]
    assert len(plan.all_deletes) == 34
    text = planning.render(plan, [])
    assert (
        "kept (1):\n  certificates.cert.gardener.cloud (every object)  (kind not served by this "
        "cluster)\n" in text
    )


def test_the_mapping_crd_is_patched_unless_handed_over() -> None:
    crd: dict[str, Any] = {
        "metadata": {"name": planning.MAPPING_CRD},
        "spec": {
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    plan = planning.plan(inputs(mapping_crd=crd))
    assert plan.crd_patch is not None
    assert plan.mapping_version == "v1"
    assert plan.mappings_namespaced
    crd["metadata"]["labels"] = dict(planning.HANDOVER_LABELS)
    crd["metadata"]["annotations"] = dict(planning.HANDOVER_ANNOTATIONS)
    assert planning.plan(inputs(mapping_crd=crd)).crd_patch is None
    assert planning.plan(inputs()).mapping_version is None


def test_render_has_three_lists() -> None:
    found = everything_found()
    service = planning.LegacyObject(planning.SERVICES, "kyma-system", "connectivity-proxy")
    found[service] = meta(service.name, labels={kyma.MANAGED_BY: kyma.MODULE_OPERATOR})
    text = planning.render(planning.plan(inputs(found=found)), ["servicemappings x  (hand over)"])
    assert "would delete (34):\n  validatingwebhookconfigurations" in text
    assert "would patch (1):\n  servicemappings x  (hand over)\n" in text
    assert "kept (1):\n  services kyma-system/connectivity-proxy  (owned by the module" in text


# -- cp-status rendering -------------------------------------------------------------------------


def test_status_table_shows_errors_in_place() -> None:
    found = Status(
        legacy=Unreadable("GET /apis: 403 Forbidden", 403),
        crd=Crd(exists=True),
        cr=Cr(exists=False),
        backup=Backup(namespace_exists=False, terminating=False, items=()),
        service_mappings=ServiceMappings(crd_exists=False),
        operator=Operator(exists=True),
    )
    text = render_table(found)
    assert "legacy installation" in text and "unknown (GET /apis: 403 Forbidden)" in text
    assert f"CRD {planning.MAPPING_CRD} absent" in text


# -- imports -------------------------------------------------------------------------------------


def test_plan_and_status_never_import_the_kubernetes_package() -> None:
    code = (
        "import sys, cleaner.plan, cleaner.status.gather, cleaner.status.render,"
        " cleaner.status_cli, cleaner.cli, cleaner.core;"
        "bad = [m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')"
        " or m in ('migrator', 'backup')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
