"""cp-status: where a cluster stands in the migration. Read-only: it only GETs and LISTs.

`gather` reads the cluster (each part on its own: a part it may not read is reported as an
error, not a failure), `render_table` turns the result into text for a person.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cleaner import observe
from cleaner import plan as planning
from common import backups, record
from common import cr as crnames
from common.cluster.client import METADATA_ONLY, Kube, resource_path
from common.errors import ApiError

OPERATOR_NAMESPACE = "kyma-system"
OPERATOR_DEPLOYMENT = "connectivity-proxy-operator"
OPERATOR_PATH = resource_path("apps", "v1", "deployments", OPERATOR_NAMESPACE, OPERATOR_DEPLOYMENT)
WORKERS = 8


PARTS = ("legacy", "crd", "cr", "backup", "serviceMappings", "operator")


def _part(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One part of the status; an apiserver error (403, 500, ...) is reported in its place.
    No answer at all (ConnectionFailed) is not caught: then cp-status fails (exit 1)."""
    try:
        return read()
    except ApiError as err:
        return _error_part(err)


def _error_part(err: ApiError) -> dict[str, Any]:
    if err.status == 403:
        return {"error": f"forbidden: {err.method} {err.path}: {err.api_message}", "status": 403}
    return {"error": str(err), "status": err.status}


def readable(status: dict[str, Any]) -> bool:
    """Whether any part could be read at all (cp-status exits 1 when none could)."""
    return any("error" not in status[name] for name in PARTS)


def _deleting(meta: dict[str, Any] | None) -> bool:
    return bool(meta and meta.get("deletionTimestamp"))


def gather(kube: Kube) -> dict[str, Any]:
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="cp-status") as pool:
        cr = pool.submit(_part, lambda: _cr(kube))
        crd = pool.submit(_part, lambda: {"exists": crnames.crd_exists(kube)})
        found_backups = pool.submit(_part, lambda: _backup_namespace(kube))
        mappings = pool.submit(_part, lambda: _mappings(kube))
        operator = pool.submit(_part, lambda: _operator(kube))
        legacy = _part(lambda: _legacy(kube, pool))
        backup_part = found_backups.result()
        cr_part = cr.result()
    live = legacy.pop("_live", {})
    annotations = cr_part.pop("annotations", {})
    missing = backups.parse_missing(annotations.get(backups.MISSING_SOURCES_ANNOTATION))
    orphaned = annotations.get(crnames.ANNOTATION_ORPHANED)
    if orphaned:
        cr_part["orphanedLegacyConfig"] = orphaned
    if cr_part.get("exists"):
        # The chain's record (README "Fleet view"); None before any step has left one.
        found = record.Record.of(annotations)
        cr_part["record"] = found.as_dict() if found else None
    return {
        "legacy": legacy,
        "crd": {"name": crnames.CRD_NAME, **crd.result()},
        "cr": {"name": f"{crnames.NAMESPACE}/{crnames.NAME}", **cr_part},
        "backup": {
            "namespace": backups.NAMESPACE,
            **_backup(backup_part, live, missing, annotations),
        },
        "serviceMappings": {"crd": planning.MAPPING_CRD, **mappings.result()},
        "operator": {"name": f"{OPERATOR_NAMESPACE}/{OPERATOR_DEPLOYMENT}", **operator.result()},
    }


def _cr(kube: Kube) -> dict[str, Any]:
    cr = crnames.get_cr(kube)
    if cr is None:
        return {"exists": False}
    return {
        "exists": True,
        "beingDeleted": _deleting(cr.get("metadata")),
        "state": (cr.get("status") or {}).get("state"),
        "migrated": crnames.is_marked(cr, crnames.ANNOTATION_MIGRATED),
        "backedUp": crnames.is_marked(cr, crnames.ANNOTATION_BACKED_UP),
        "cleaned": crnames.is_marked(
            cr, crnames.ANNOTATION_CLEANED, crnames.ANNOTATION_CLEANED_OLD
        ),
        "annotations": crnames.annotations_of(cr),  # for the backup part; removed after
    }


def _backup_namespace(kube: Kube) -> dict[str, Any]:
    read = observe.read_backup_namespace(kube)
    return {
        **read.backups,
        "_namespace": read.namespace,
        "_preserved": read.preserved,
    }


def _operator(kube: Kube) -> dict[str, Any]:
    deployment = kube.get(OPERATOR_PATH, accept=METADATA_ONLY)
    return {
        "exists": deployment is not None,
        "beingDeleted": _deleting((deployment or {}).get("metadata")),
    }


def _legacy(kube: Kube, pool: ThreadPoolExecutor) -> dict[str, Any]:
    reads, skipped = planning.reads(observe.discover(kube))
    return summarize_legacy(observe.read_legacy(kube, reads, pool), skipped)


def summarize_legacy(read: observe.Legacy, skipped: list[planning.Kind]) -> dict[str, Any]:
    found = read.found
    remaining: list[str] = []
    kept: list[str] = []
    deleting: list[str] = []
    for obj in planning.LEGACY_OBJECTS:
        meta = found.get(obj)
        if meta is None:
            continue
        owned = planning.owned_by_module(meta)
        if owned:
            kept.append(f"{obj}: {owned}")
        else:
            remaining.append(str(obj))
            if _deleting(meta):
                deleting.append(str(obj))
    live = dict(read.digests)
    return {
        "present": bool(remaining),
        "remaining": remaining,
        "beingDeleted": deleting,
        "keptByModule": kept,
        "kindsNotServed": [kind.name for kind in skipped],
        "_live": live,
    }


def _backup(
    found: dict[str, Any],
    live: dict[str, str],
    missing_at_backup: list[str],
    cr_annotations: dict[str, str],
) -> dict[str, Any]:
    if "error" in found:
        return dict(found)
    namespace = found.get("_namespace")
    items: list[dict[str, Any]] = []
    for name in backups.SOURCES:
        backup = found.get(name)
        item: dict[str, Any] = {"name": name, "present": backup is not None}
        if backup is not None:
            item["beingDeleted"] = _deleting(backup.get("metadata"))
            item["digest"] = backups.backup_problem(backup, name) or "verified"
            digest = live.get(name)
            problem = planning.user_config_problem(
                name,
                backup,
                live_digest=digest,
                namespace=namespace,
                cr={"metadata": {"annotations": cr_annotations}},
            )
            item["live"] = (
                "gone"
                if digest is None
                else f"not safe to delete: {problem.message}"
                if problem
                else "the backup holds its data"
            )
        elif name in missing_at_backup:
            item["note"] = "did not exist when the backup was taken"
        items.append(item)
    present = [item for item in items if item["present"]]
    preserved = [
        {
            "name": copy["metadata"]["name"],
            "copyOf": copy["metadata"]["labels"].get(backups.PRESERVED_LABEL),
            "reason": copy["metadata"]
            .get("annotations", {})
            .get(backups.PRESERVED_REASON_ANNOTATION),
        }
        for copy in found.get("_preserved") or []
    ]
    return {
        "present": bool(present),
        "verified": bool(present) and all(item["digest"] == "verified" for item in present),
        "terminating": bool(namespace and namespace["metadata"].get("deletionTimestamp")),
        "namespaceExists": namespace is not None,
        "items": items,
        "preserved": preserved,
    }


def _mappings(kube: Kube) -> dict[str, Any]:
    crd = observe.read_mapping_crd(kube)
    if crd is None:
        return {"crdExists": False}
    version = planning.mapping_version(crd)
    total = handed_over = deleting = 0
    if version is not None:
        for page in observe.mapping_pages(kube, version):
            total += len(page)
            handed_over += sum(planning.handover_patch(meta) is None for meta in page)
            deleting += sum(_deleting(meta) for meta in page)
    return {
        "crdExists": True,
        "crdBeingDeleted": _deleting(crd.get("metadata")),
        "beingDeleted": deleting,
        "scope": (crd.get("spec") or {}).get("scope"),
        "crdHandedOver": planning.handover_patch(crd.get("metadata") or {}) is None,
        "total": total,
        "handedOver": handed_over,
        "notHandedOver": total - handed_over,
    }


# -- rendering -------------------------------------------------------------------------------


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _error(part: dict[str, Any]) -> str | None:
    return f"unknown ({part['error']})" if "error" in part else None


def _exists(part: dict[str, Any]) -> str:
    if not part["exists"]:
        return "absent"
    return "exists, being deleted (Terminating)" if part.get("beingDeleted") else "exists"


def _record_row(found: dict[str, str] | None) -> str:
    if not found:
        return "none yet (no step has run on this CR)"
    return (
        f"{found['result']} ({found['reason']}) after {found['step']}, since "
        f"{found['since'] or '-'}: {found['message']}"
    )


def render_table(status: dict[str, Any]) -> str:
    legacy, crd, cr = status["legacy"], status["crd"], status["cr"]
    backup, mappings, operator = status["backup"], status["serviceMappings"], status["operator"]
    rows: list[tuple[str, str]] = []

    state = _error(legacy)
    if state is None:
        count = len(legacy["remaining"])
        state = f"present: {count} legacy object(s) remain" if count else "absent"
        if legacy.get("beingDeleted"):
            state += f", {len(legacy['beingDeleted'])} of them being deleted"
        if legacy["keptByModule"]:
            state += f" ({len(legacy['keptByModule'])} with legacy names kept: module-owned)"
    rows.append(("legacy installation", state))

    rows.append((f"CRD {crd['name']}", _error(crd) or _exists(crd)))

    state = _error(cr)
    if state is None:
        if cr["exists"]:
            deleting = " being deleted (Terminating)," if cr.get("beingDeleted") else ""
            state = (
                f"exists,{deleting} state {cr.get('state') or '-'}; migrated "
                f"{_yes(cr['migrated'])}, "
                f"backed-up {_yes(cr['backedUp'])}, cleaned {_yes(cr['cleaned'])}"
            )
            if cr.get("orphanedLegacyConfig"):
                state += (
                    f"; legacy ConfigMaps left alone (no legacy installation): "
                    f"{cr['orphanedLegacyConfig']} ({crnames.MIGRATE_ORPHANED_HINT})"
                )
        else:
            state = "absent"
    rows.append((f"CR {cr['name']}", state))
    if cr.get("exists") and "error" not in cr:
        rows.append(("migration record", _record_row(cr.get("record"))))

    state = _error(backup)
    if state is None:
        if not backup["present"]:
            state = "absent"
        else:
            state = "present, digests verify" if backup["verified"] else "present, NOT verified"
            backups_deleting = [i["name"] for i in backup["items"] if i.get("beingDeleted")]
            if backups_deleting:
                state += "; being deleted: " + ", ".join(backups_deleting)
            changed = [
                i["name"] for i in backup["items"] if str(i.get("live", "")).startswith("not safe")
            ]
            if changed:
                state += "; not safe to delete yet: " + ", ".join(changed)
        if backup.get("terminating"):
            state = "namespace Terminating (being deleted); " + state
        if backup.get("preserved"):
            state += f"; {len(backup['preserved'])} earlier copy(ies) preserved"
    rows.append((f"backup {backup['namespace']}", state))

    state = _error(mappings)
    if state is None:
        if not mappings["crdExists"]:
            state = f"CRD {mappings['crd']} absent"
        else:
            state = (
                f"{mappings['handedOver']} of {mappings['total']} handed over "
                f"({mappings['scope']} scope; CRD handed over {_yes(mappings['crdHandedOver'])})"
            )
            if mappings.get("beingDeleted"):
                state += f"; {mappings['beingDeleted']} being deleted"
            if mappings.get("crdBeingDeleted"):
                state += "; the CRD is being deleted (Terminating)"
    rows.append(("ServiceMappings", state))

    rows.append(
        (
            f"operator Deployment {operator['name']}",
            _error(operator) or _exists(operator),
        )
    )

    width = max(len(what) for what, _ in rows)
    lines = [f"{'WHAT':<{width}}  STATE"]
    lines += [f"{what:<{width}}  {state}" for what, state in rows]
    if "error" not in backup and backup["present"]:
        lines += ["", "backup:"]
        for item in backup["items"]:
            if item["present"]:
                lines.append(
                    f"  {item['name']}: digest {item['digest']}; live ConfigMap {item['live']}"
                    + ("; being deleted" if item.get("beingDeleted") else "")
                )
            else:
                lines.append(f"  {item['name']}: {item.get('note', 'no backup')}")
        for copy in backup.get("preserved") or []:
            lines.append(
                f"  {copy['name']}: an earlier copy of {copy['copyOf']} kept as found "
                f"({copy['reason']}); cp-restore --from-preserved {copy['name']} uses it"
            )
    if "error" not in legacy:
        if legacy["remaining"]:
            being_deleted = set(legacy.get("beingDeleted", []))
            lines += ["", "remaining legacy objects:"]
            lines += [
                f"  {item}" + ("  (being deleted)" if item in being_deleted else "")
                for item in legacy["remaining"]
            ]
        if legacy["keptByModule"]:
            lines += ["", "legacy names the module owns (kept):"]
            lines += [f"  {item}" for item in legacy["keptByModule"]]
        if legacy["kindsNotServed"]:
            lines += [
                "",
                "kinds this cluster does not serve: " + ", ".join(legacy["kindsNotServed"]),
            ]
    return "\n".join(lines) + "\n"
