"""A `model.Status` as text: a table for a person, JSON for scripts. Pure: no cluster here.

The table has one row per section (ROWS), then the details a row cannot hold (DETAILS). A new
section is one function in each (and a key in `to_json`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from cleaner import plan as planning
from cleaner.status.model import (
    Backup,
    BackupItem,
    Cr,
    Crd,
    Legacy,
    Operator,
    ServiceMappings,
    Status,
    Unreadable,
)
from common import kyma
from common.cr import MIGRATE_ORPHANED_HINT

CRD = f"CRD {kyma.CRD_NAME}"
CR = kyma.CR_REF
OPERATOR = kyma.ref(kyma.NAMESPACE, kyma.OPERATOR_DEPLOYMENT)

T = TypeVar("T")


# -- the table ----------------------------------------------------------------------------------


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _state(part: T | Unreadable, state_of: Callable[[T], str]) -> str:
    return f"unknown ({part.error})" if isinstance(part, Unreadable) else state_of(part)


def _exists(exists: bool, being_deleted: bool) -> str:
    if not exists:
        return "absent"
    return "exists, being deleted (Terminating)" if being_deleted else "exists"


def _legacy_row(legacy: Legacy) -> str:
    count = len(legacy.remaining)
    state = f"present: {count} legacy object(s) remain" if count else "absent"
    if legacy.being_deleted:
        state += f", {len(legacy.being_deleted)} of them being deleted"
    if legacy.kept_by_module:
        state += f" ({len(legacy.kept_by_module)} with legacy names kept: module-owned)"
    return state


def _cr_row(cr: Cr) -> str:
    if not cr.exists:
        return "absent"
    deleting = " being deleted (Terminating)," if cr.being_deleted else ""
    state = (
        f"exists,{deleting} state {cr.state or '-'}; migrated {_yes(cr.migrated)}, "
        f"backed-up {_yes(cr.backed_up)}, cleaned {_yes(cr.cleaned)}"
    )
    if cr.orphaned_legacy_config:
        state += (
            f"; legacy ConfigMaps left alone (no legacy installation): "
            f"{cr.orphaned_legacy_config} ({MIGRATE_ORPHANED_HINT})"
        )
    return state


def _record_row(cr: Cr) -> str:
    if not cr.exists:
        return "none (no CR)"
    found = cr.record
    if found is None:
        return "none yet (no step has run on this CR)"
    return (
        f"{found.result} ({found.reason}) after {found.step}, since {found.since or '-'}: "
        f"{found.message}"
    )


def _backup_row(backup: Backup) -> str:
    if not backup.present:
        state = "absent"
    else:
        state = "present, digests verify" if backup.verified else "present, NOT verified"
        deleting = [item.name for item in backup.items if item.being_deleted]
        if deleting:
            state += "; being deleted: " + ", ".join(deleting)
        not_safe = [item.name for item in backup.items if item.present and _not_safe(item)]
        if not_safe:
            state += "; not safe to delete yet: " + ", ".join(not_safe)
    if backup.terminating:
        state = "namespace Terminating (being deleted); " + state
    if backup.preserved:
        state += f"; {len(backup.preserved)} earlier copy(ies) preserved"
    return state


def _mappings_row(mappings: ServiceMappings) -> str:
    if not mappings.crd_exists:
        return f"CRD {planning.MAPPING_CRD} absent"
    state = (
        f"{mappings.handed_over} of {mappings.total} handed over "
        f"({mappings.scope} scope; CRD handed over {_yes(mappings.crd_handed_over)})"
    )
    if mappings.being_deleted:
        state += f"; {mappings.being_deleted} being deleted"
    if mappings.crd_being_deleted:
        state += "; the CRD is being deleted (Terminating)"
    return state


def _crd_row(crd: Crd) -> str:
    return _exists(crd.exists, False)


def _operator_row(operator: Operator) -> str:
    return _exists(operator.exists, operator.being_deleted)


# (what, its state), in the table's order.
ROWS: tuple[tuple[str, Callable[[Status], str]], ...] = (
    ("legacy installation", lambda s: _state(s.legacy, _legacy_row)),
    (CRD, lambda s: _state(s.crd, _crd_row)),
    (f"CR {CR}", lambda s: _state(s.cr, _cr_row)),
    ("migration record", lambda s: _state(s.cr, _record_row)),
    (f"backup {kyma.BACKUP_NAMESPACE}", lambda s: _state(s.backup, _backup_row)),
    ("ServiceMappings", lambda s: _state(s.service_mappings, _mappings_row)),
    (f"operator Deployment {OPERATOR}", lambda s: _state(s.operator, _operator_row)),
)


def _live(item: BackupItem) -> str:
    """What the backup means for its live ConfigMap."""
    if not item.live_exists:
        return "gone"
    if item.not_safe:
        return f"not safe to delete: {item.not_safe}"
    return "the backup holds its data"


def _not_safe(item: BackupItem) -> bool:
    return item.live_exists and item.not_safe is not None


def _digest(item: BackupItem) -> str:
    return item.problem or "verified"


def _backup_details(status: Status) -> list[str]:
    backup = status.backup
    if isinstance(backup, Unreadable) or not backup.present:
        return []
    lines = ["", "backup:"]
    for item in backup.items:
        if item.present:
            lines.append(
                f"  {item.name}: digest {_digest(item)}; live ConfigMap {_live(item)}"
                + ("; being deleted" if item.being_deleted else "")
            )
        else:
            lines.append(f"  {item.name}: {_note(item) or 'no backup'}")
    for copy in backup.preserved:
        lines.append(
            f"  {copy.name}: an earlier copy of {copy.copy_of} kept as found "
            f"({copy.reason}); cp-restore --from-preserved {copy.name} uses it"
        )
    return lines


def _legacy_details(status: Status) -> list[str]:
    legacy = status.legacy
    if isinstance(legacy, Unreadable):
        return []
    lines: list[str] = []
    if legacy.remaining:
        lines += ["", "remaining legacy objects:"]
        lines += [
            f"  {item}" + ("  (being deleted)" if item in legacy.being_deleted else "")
            for item in legacy.remaining
        ]
    if legacy.kept_by_module:
        lines += ["", "legacy names the module owns (kept):"]
        lines += [f"  {item}" for item in legacy.kept_by_module]
    if legacy.kinds_not_served:
        lines += ["", "kinds this cluster does not serve: " + ", ".join(legacy.kinds_not_served)]
    return lines


DETAILS: tuple[Callable[[Status], list[str]], ...] = (_backup_details, _legacy_details)


def render_table(status: Status) -> str:
    rows = [(what, state_of(status)) for what, state_of in ROWS]
    width = max(len(what) for what, _ in rows)
    lines = [f"{'WHAT':<{width}}  STATE"]
    lines += [f"{what:<{width}}  {state}" for what, state in rows]
    for details in DETAILS:
        lines += details(status)
    return "\n".join(lines) + "\n"


# -- JSON ---------------------------------------------------------------------------------------


def to_json(status: Status) -> str:
    """The status for scripts: the keys (camelCase) are cp-status's interface; keep them."""
    return json.dumps(as_dict(status), indent=2)


def as_dict(status: Status) -> dict[str, Any]:
    return {
        "legacy": _part(status.legacy, {}, _legacy_dict),
        "crd": _part(status.crd, {"name": kyma.CRD_NAME}, lambda crd: {"exists": crd.exists}),
        "cr": _part(status.cr, {"name": CR}, _cr_dict),
        "backup": _part(status.backup, {"namespace": kyma.BACKUP_NAMESPACE}, _backup_dict),
        "serviceMappings": _part(
            status.service_mappings, {"crd": planning.MAPPING_CRD}, _mappings_dict
        ),
        "operator": _part(
            status.operator,
            {"name": OPERATOR},
            lambda op: {"exists": op.exists, "beingDeleted": op.being_deleted},
        ),
    }


def _part(
    part: T | Unreadable, names: dict[str, Any], as_dict: Callable[[T], dict[str, Any]]
) -> dict[str, Any]:
    if isinstance(part, Unreadable):
        return {**names, "error": part.error, "status": part.status}
    return {**names, **as_dict(part)}


def _legacy_dict(legacy: Legacy) -> dict[str, Any]:
    return {
        "present": legacy.present,
        "remaining": list(legacy.remaining),
        "beingDeleted": list(legacy.being_deleted),
        "keptByModule": list(legacy.kept_by_module),
        "kindsNotServed": list(legacy.kinds_not_served),
    }


def _cr_dict(cr: Cr) -> dict[str, Any]:
    if not cr.exists:
        return {"exists": False}
    found: dict[str, Any] = {
        "exists": True,
        "beingDeleted": cr.being_deleted,
        "state": cr.state,
        "migrated": cr.migrated,
        "backedUp": cr.backed_up,
        "cleaned": cr.cleaned,
    }
    if cr.orphaned_legacy_config:
        found["orphanedLegacyConfig"] = cr.orphaned_legacy_config
    found["record"] = cr.record.as_dict() if cr.record else None
    return found


def _note(item: BackupItem) -> str | None:
    return "did not exist when the backup was taken" if item.missing_at_backup else None


def _backup_item_dict(item: BackupItem) -> dict[str, Any]:
    found: dict[str, Any] = {"name": item.name, "present": item.present}
    if item.present:
        found.update(beingDeleted=item.being_deleted, digest=_digest(item), live=_live(item))
    elif item.missing_at_backup:
        found["note"] = _note(item)
    return found


def _backup_dict(backup: Backup) -> dict[str, Any]:
    return {
        "present": backup.present,
        "verified": backup.verified,
        "terminating": backup.terminating,
        "namespaceExists": backup.namespace_exists,
        "items": [_backup_item_dict(item) for item in backup.items],
        "preserved": [
            {"name": copy.name, "copyOf": copy.copy_of, "reason": copy.reason}
            for copy in backup.preserved
        ],
    }


def _mappings_dict(mappings: ServiceMappings) -> dict[str, Any]:
    if not mappings.crd_exists:
        return {"crdExists": False}
    return {
        "crdExists": True,
        "crdBeingDeleted": mappings.crd_being_deleted,
        "beingDeleted": mappings.being_deleted,
        "scope": mappings.scope,
        "crdHandedOver": mappings.crd_handed_over,
        "total": mappings.total,
        "handedOver": mappings.handed_over,
        "notHandedOver": mappings.not_handed_over,
    }
