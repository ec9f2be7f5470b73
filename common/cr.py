"""The ConnectivityProxy CR and the names every step shares."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from common.cluster.client import METADATA_ONLY, Kube, resource_path
from common.logs import fields

log = logging.getLogger("cr")

GROUP = "connectivityproxy.sap.com"
VERSION = "v1"
PLURAL = "connectivityproxies"
CRD_NAME = f"{PLURAL}.{GROUP}"
NAMESPACE = "kyma-system"
NAME = "connectivity-proxy"

ANNOTATION_MIGRATED = f"{GROUP}/migrated"
ANNOTATION_BACKED_UP = f"{GROUP}/backed-up"
ANNOTATION_CLEANED = f"{GROUP}/cleaned"
ANNOTATION_CLEANED_OLD = f"{GROUP}/cleaned-up"  # an earlier spelling; counts as done
# Set by the migrator when legacy ConfigMaps remain without a legacy installation.
ANNOTATION_ORPHANED = f"{GROUP}/orphaned-legacy-config"
# The record of where the chain stands and why (common.record, README "Fleet view"): one
# annotation per field, so that kube-state-metrics reads each with one path.
ANNOTATION_STEP = f"{GROUP}/migration-step"
ANNOTATION_RESULT = f"{GROUP}/migration-result"
ANNOTATION_REASON = f"{GROUP}/migration-reason"
ANNOTATION_MESSAGE = f"{GROUP}/migration-message"
ANNOTATION_SINCE = f"{GROUP}/migration-since"
RECORD_ANNOTATIONS = (
    ANNOTATION_STEP,
    ANNOTATION_RESULT,
    ANNOTATION_REASON,
    ANNOTATION_MESSAGE,
    ANNOTATION_SINCE,
)
MIGRATE_ORPHANED_HINT = (
    "cp-migrator --migrate-orphaned (or CP_MIGRATE_ORPHANED=true) migrates it on purpose"
)

CR_PATH = resource_path(GROUP, VERSION, PLURAL, NAMESPACE, NAME)
CRD_PATH = resource_path("apiextensions.k8s.io", "v1", "customresourcedefinitions", name=CRD_NAME)


def ref(obj: dict[str, Any]) -> str:
    """`namespace/name` (or `name` for cluster-scoped objects), as logs name objects."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def is_marked(obj: dict[str, Any], *keys: str) -> bool:
    found = annotations_of(obj)
    return any(found.get(key) == "true" for key in keys)


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
        log.warning("could not record an event", extra=fields(object=ref(obj), error=str(err)))
