"""The ConnectivityProxy CR: reading it, its marks, and Events on it (its names: common.kyma)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from common import kyma
from common.cluster.client import METADATA_ONLY, Kube, resource_path
from common.logs import fields

log = logging.getLogger("cr")

MIGRATE_ORPHANED_HINT = (
    "cp-migrator --migrate-orphaned (or CP_MIGRATE_ORPHANED=true) migrates it on purpose"
)

CR_PATH = resource_path(kyma.GROUP, kyma.VERSION, kyma.PLURAL, kyma.NAMESPACE, kyma.CR_NAME)
CRD_PATH = resource_path(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", name=kyma.CRD_NAME
)


def object_ref(obj: dict[str, Any]) -> str:
    """An object's `namespace/name` (or `name` for cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    return kyma.ref(meta.get("namespace"), str(meta.get("name")))


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def is_marked(obj: dict[str, Any], *keys: str) -> bool:
    found = annotations_of(obj)
    return any(found.get(key) == "true" for key in keys)


def skip_reason(crd_exists: bool, cr: Mapping[str, Any] | None, *, step: str) -> str | None:
    """Why a step that works on a migrated CR ("back up", "clean") has nothing to do, or None
    when it should run: no CRD, no CR, the CR already cleaned, or (to back up) not migrated."""
    if not crd_exists:
        return f"the CRD {kyma.CRD_NAME} is not installed; nothing to {step}"
    if cr is None:
        return f"ConnectivityProxy {kyma.CR_REF} does not exist; nothing to {step}"
    cleaned = is_marked(dict(cr), kyma.ANNOTATION_CLEANED, kyma.ANNOTATION_CLEANED_OLD)
    if step == "clean":
        return f"{kyma.CR_REF} is already cleaned" if cleaned else None
    if cleaned:
        return (
            f"{kyma.CR_REF} is cleaned: the migration is complete (legacy ConfigMaps that appear "
            "again later are not the configuration the CR holds)"
        )
    if not is_marked(dict(cr), kyma.ANNOTATION_MIGRATED):
        return (
            f"{kyma.CR_REF} is not migrated yet (no {kyma.ANNOTATION_MIGRATED}); "
            f"there is nothing to {step} yet"
        )
    return None


def crd_exists(kube: Kube) -> bool:
    return kube.get(CRD_PATH, accept=METADATA_ONLY) is not None


def get_cr(kube: Kube) -> dict[str, Any] | None:
    return kube.get(CR_PATH)


def mark(kube: Kube, cr: dict[str, Any], values: Mapping[str, str | None]) -> dict[str, Any]:
    """Set annotations on the CR under a resourceVersion precondition (409 if it moved)."""
    patch = {
        "metadata": {
            "resourceVersion": cr["metadata"]["resourceVersion"],
            "annotations": values,
        }
    }
    return kube.merge_patch(CR_PATH, patch, retry_safe=True)


def event_body(
    obj: dict[str, Any], reason: str, message: str, component: str, *, kind: str, now: str
) -> dict[str, Any]:
    """A core v1 Event about `obj` (count 1), as kubectl describe lists it."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or "default"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def record_event(
    kube: Kube, obj: dict[str, Any], reason: str, message: str, component: str
) -> None:
    """A Normal Event on `obj`; best effort: a failure is logged, never raised."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = event_body(obj, reason, message, component, kind="Normal", now=now)
    namespace = event["metadata"]["namespace"]
    try:
        kube.request("POST", resource_path("", "v1", "events", namespace), body=event)
    except Exception as err:  # best effort means best effort: never fail the run over it
        log.warning(
            "could not record an event", extra=fields(object=object_ref(obj), error=str(err))
        )
