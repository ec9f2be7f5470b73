"""Pure units: cp-status's model and its renderers (table, JSON), without a cluster."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from cleaner import observe
from cleaner import plan as planning
from cleaner.status import model
from cleaner.status.gather import backup_of, cr_of, legacy_of
from cleaner.status.render import render_table, to_json
from common import kyma
from common.backups import content_digest
from common.legacy import owned_by_module
from common.record import Record
from tests.support.backup_copies import backup_copy

NOT_SAFE = (
    "its data differs from its backup connectivity-proxy-backup/connectivity-proxy; run cp-backup"
)
KEPT = (
    "services kyma-system/connectivity-proxy: owned by the module "
    "(label app.kubernetes.io/managed-by=connectivity-proxy-operator)"
)
PRESERVED = "connectivity-proxy-preserved-0123456789"

# Half-way through a migration, with something to show in every row and block.
MIDWAY = model.Status(
    legacy=model.Legacy(
        remaining=(
            "statefulsets.apps kyma-system/connectivity-proxy",
            "services kyma-system/connectivity-proxy-tunnel",
        ),
        being_deleted=("statefulsets.apps kyma-system/connectivity-proxy",),
        kept_by_module=(KEPT,),
        kinds_not_served=("certificates.cert.gardener.cloud",),
    ),
    crd=model.Crd(exists=True),
    cr=model.Cr(
        exists=True,
        state="Ready",
        migrated=True,
        backed_up=True,
        orphaned_legacy_config="kyma-system/connectivity-proxy",
        record=Record(
            step="cleaner",
            result="attention",
            reason="OrphanedLegacyConfig",
            message="legacy ConfigMaps left alone",
            since="2026-12-06T07:00:00Z",
        ),
    ),
    backup=model.Backup(
        namespace_exists=True,
        terminating=False,
        items=(
            model.BackupItem(
                "connectivity-proxy", present=True, live_exists=True, not_safe=NOT_SAFE
            ),
            model.BackupItem("connectivity-proxy-info", present=False, missing_at_backup=True),
        ),
        preserved=(model.PreservedCopy(PRESERVED, "connectivity-proxy", "made by another tool"),),
    ),
    service_mappings=model.ServiceMappings(
        crd_exists=True,
        crd_being_deleted=True,
        scope="Namespaced",
        total=3,
        handed_over=1,
        being_deleted=1,
    ),
    operator=model.Operator(exists=True, being_deleted=True),
)

MIDWAY_TABLE = f"""\
WHAT                                                         STATE
legacy installation                                          present: 2 legacy object(s) remain, \
1 of them being deleted (1 with legacy names kept: module-owned)
CRD connectivityproxies.connectivityproxy.sap.com            exists
CR kyma-system/connectivity-proxy                            exists, state Ready; migrated yes, \
backed-up yes, cleaned no; legacy ConfigMaps left alone (no legacy installation): \
kyma-system/connectivity-proxy (cp-migrator --migrate-orphaned (or CP_MIGRATE_ORPHANED=true) \
migrates it on purpose)
migration record                                             attention (OrphanedLegacyConfig) \
after cleaner, since 2026-12-06T07:00:00Z: legacy ConfigMaps left alone
backup connectivity-proxy-backup                             present, digests verify; not safe \
to delete yet: connectivity-proxy; 1 earlier copy(ies) preserved
ServiceMappings                                              1 of 3 handed over (Namespaced \
scope; CRD handed over no); 1 being deleted; the CRD is being deleted (Terminating)
operator Deployment kyma-system/connectivity-proxy-operator  exists, being deleted (Terminating)

backup:
  connectivity-proxy: digest verified; live ConfigMap not safe to delete: {NOT_SAFE}
  connectivity-proxy-info: did not exist when the backup was taken
  {PRESERVED}: an earlier copy of connectivity-proxy kept as found (made by another tool); \
cp-restore --from-preserved {PRESERVED} uses it

remaining legacy objects:
  statefulsets.apps kyma-system/connectivity-proxy  (being deleted)
  services kyma-system/connectivity-proxy-tunnel

legacy names the module owns (kept):
  {KEPT}

kinds this cluster does not serve: certificates.cert.gardener.cloud
"""

# The JSON is cp-status's interface for scripts: these keys, in this order.
MIDWAY_JSON: dict[str, Any] = {
    "legacy": {
        "present": True,
        "remaining": [
            "statefulsets.apps kyma-system/connectivity-proxy",
            "services kyma-system/connectivity-proxy-tunnel",
        ],
        "beingDeleted": ["statefulsets.apps kyma-system/connectivity-proxy"],
        "keptByModule": [KEPT],
        "kindsNotServed": ["certificates.cert.gardener.cloud"],
    },
    "crd": {"name": "connectivityproxies.connectivityproxy.sap.com", "exists": True},
    "cr": {
        "name": "kyma-system/connectivity-proxy",
        "exists": True,
        "beingDeleted": False,
        "state": "Ready",
        "migrated": True,
        "backedUp": True,
        "cleaned": False,
        "orphanedLegacyConfig": "kyma-system/connectivity-proxy",
        "record": {
            "step": "cleaner",
            "result": "attention",
            "reason": "OrphanedLegacyConfig",
            "message": "legacy ConfigMaps left alone",
            "since": "2026-12-06T07:00:00Z",
        },
    },
    "backup": {
        "namespace": "connectivity-proxy-backup",
        "present": True,
        "verified": True,
        "terminating": False,
        "namespaceExists": True,
        "items": [
            {
                "name": "connectivity-proxy",
                "present": True,
                "beingDeleted": False,
                "digest": "verified",
                "live": f"not safe to delete: {NOT_SAFE}",
            },
            {
                "name": "connectivity-proxy-info",
                "present": False,
                "note": "did not exist when the backup was taken",
            },
        ],
        "preserved": [
            {"name": PRESERVED, "copyOf": "connectivity-proxy", "reason": "made by another tool"}
        ],
    },
    "serviceMappings": {
        "crd": "servicemappings.connectivityproxy.sap.com",
        "crdExists": True,
        "crdBeingDeleted": True,
        "beingDeleted": 1,
        "scope": "Namespaced",
        "crdHandedOver": False,
        "total": 3,
        "handedOver": 1,
        "notHandedOver": 2,
    },
    "operator": {
        "name": "kyma-system/connectivity-proxy-operator",
        "exists": True,
        "beingDeleted": True,
    },
}


def test_the_table_shows_every_row_and_block() -> None:
    assert render_table(MIDWAY) == MIDWAY_TABLE


def test_the_json_keeps_its_keys_and_their_order() -> None:
    assert to_json(MIDWAY) == json.dumps(MIDWAY_JSON, indent=2)


def test_every_part_unreadable() -> None:
    forbidden = model.Unreadable("forbidden: GET /x: no", 403)
    nothing = model.Status(*(forbidden,) * len(dataclasses.fields(model.Status)))
    assert not nothing.readable
    assert MIDWAY.readable
    assert dataclasses.replace(nothing, operator=model.Operator(exists=False)).readable
    rows = render_table(nothing).splitlines()[1:]
    assert len(rows) == 7
    assert all(row.endswith("  unknown (forbidden: GET /x: no)") for row in rows)
    found = json.loads(to_json(nothing))
    assert found["legacy"] == {"error": "forbidden: GET /x: no", "status": 403}
    assert found["cr"] == {
        "name": "kyma-system/connectivity-proxy",
        "error": "forbidden: GET /x: no",
        "status": 403,
    }


def test_the_model_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        MIDWAY.cr = model.Cr(exists=False)  # type: ignore[misc]


def test_nothing_installed() -> None:
    status = model.Status(
        legacy=model.Legacy((), (), (), ()),
        crd=model.Crd(exists=False),
        cr=model.Cr(exists=False),
        backup=model.Backup(namespace_exists=False, terminating=False, items=()),
        service_mappings=model.ServiceMappings(crd_exists=False),
        operator=model.Operator(exists=False),
    )
    assert render_table(status).splitlines()[1:] == [
        f"{what:<59}  {state}"
        for what, state in [
            ("legacy installation", "absent"),
            ("CRD connectivityproxies.connectivityproxy.sap.com", "absent"),
            ("CR kyma-system/connectivity-proxy", "absent"),
            ("migration record", "none (no CR)"),
            ("backup connectivity-proxy-backup", "absent"),
            ("ServiceMappings", "CRD servicemappings.connectivityproxy.sap.com absent"),
            ("operator Deployment kyma-system/connectivity-proxy-operator", "absent"),
        ]
    ]
    found = json.loads(to_json(status))
    assert found["cr"] == {"name": "kyma-system/connectivity-proxy", "exists": False}
    assert found["serviceMappings"] == {
        "crd": "servicemappings.connectivityproxy.sap.com",
        "crdExists": False,
    }


# -- from what was read to the model (gather's pure half) ---------------------------------------


def test_each_backup_is_checked_against_its_live_configmap_and_the_cr() -> None:
    data = {"k": "v"}
    digest = content_digest({"data": data})
    read = observe.BackupNamespace(
        namespace={"metadata": {"name": kyma.BACKUP_NAMESPACE}},
        backups={
            "connectivity-proxy": backup_copy("connectivity-proxy", {"data": data}),
            "connectivity-proxy-info": backup_copy("connectivity-proxy-info", {"data": data}),
        },
        preserved=[],
    )
    migrated = {kyma.MIGRATED_DIGESTS_ANNOTATION: f"connectivity-proxy={digest}"}
    found = backup_of(read, {"connectivity-proxy": digest}, migrated)
    assert found.verified and found.present and not found.terminating
    proxy, info = found.items
    assert (proxy.live_exists, proxy.not_safe) == (True, None)
    assert not info.live_exists
    # The live ConfigMap changed after it was migrated: not safe to delete, the CR says why.
    drifted = backup_of(read, {"connectivity-proxy": "sha256:other"}, migrated)
    assert "changed after it was migrated" in (drifted.items[0].not_safe or "")
    row = render_table(dataclasses.replace(MIDWAY, backup=drifted)).splitlines()[5]
    assert row.endswith("present, digests verify; not safe to delete yet: connectivity-proxy")


def test_a_tampered_backup_and_a_terminating_namespace() -> None:
    tampered = backup_copy("connectivity-proxy", {"data": {"k": "v"}})
    tampered["data"] = {"k": "changed"}
    read = observe.BackupNamespace(
        namespace={"metadata": {"name": kyma.BACKUP_NAMESPACE, "deletionTimestamp": "now"}},
        backups={"connectivity-proxy": tampered, "connectivity-proxy-info": None},
        preserved=[],
    )
    missing = {kyma.MISSING_SOURCES_ANNOTATION: "connectivity-proxy-info"}
    found = backup_of(read, {}, missing)
    assert found.present and not found.verified and found.terminating
    assert "differs from the recorded" in (found.items[0].problem or "")
    assert found.items[1].missing_at_backup
    row = render_table(dataclasses.replace(MIDWAY, backup=found)).splitlines()[5]
    assert row.endswith("namespace Terminating (being deleted); present, NOT verified")


def test_the_cr_and_the_legacy_objects() -> None:
    assert cr_of(None) == model.Cr(exists=False)
    marks = {
        "connectivityproxy.sap.com/migrated": "true",
        "connectivityproxy.sap.com/cleaned-up": "true",
    }
    cr = cr_of({"metadata": {"annotations": marks}, "status": {"state": "Warning"}})
    assert cr == model.Cr(exists=True, state="Warning", migrated=True, cleaned=True)
    statefulset, service = planning.LEGACY_OBJECTS[0], planning.LEGACY_OBJECTS[1]
    owned = {"labels": {kyma.MANAGED_BY: kyma.MODULE_OPERATOR}}
    read = observe.Legacy(
        found={statefulset: {"deletionTimestamp": "now"}, service: owned}, digests={}
    )
    legacy = legacy_of(read, [planning.GARDENER_CERTIFICATES])
    assert legacy.remaining == legacy.being_deleted == (str(statefulset),)
    assert legacy.kept_by_module == (f"{service}: {owned_by_module(owned)}",)
    assert legacy.kinds_not_served == (planning.GARDENER_CERTIFICATES.name,)
