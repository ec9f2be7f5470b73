"""Reading the cluster into plain data, shared by cp-cleaner and cp-status (read-only)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from cleaner import access
from cleaner import plan as planning
from common import backups, kyma
from common.backups import content_digest
from common.cluster.client import METADATA_LIST, METADATA_ONLY, Kube, resource_path
from common.errors import ApiError

log = logging.getLogger("cleaner")

# One request answers for every group and version (aggregated discovery, v2 since 1.30,
# v2beta1 before); an older apiserver answers the plain APIGroupList instead.
AGGREGATED_DISCOVERY = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
CRD_GROUP = "apiextensions.k8s.io"
MAPPING_CRD_PATH = resource_path(
    CRD_GROUP, "v1", "customresourcedefinitions", name=planning.MAPPING_CRD
)
LEGACY_STATEFULSET_PATH = resource_path(
    "apps", "v1", "statefulsets", kyma.NAMESPACE, kyma.STATEFULSET
)
BACKUPS_PATH = resource_path("", "v1", "configmaps", kyma.BACKUP_NAMESPACE)
BACKUP_NAMESPACE_PATH = resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE)
RULES_REVIEW_PATH = resource_path("authorization.k8s.io", "v1", "selfsubjectrulesreviews")
PAGE_SIZE = 500


def discover(kube: Kube) -> dict[tuple[str, str], tuple[str, ...]]:
    """Which (group, resource) the cluster serves, in which versions (preferred first)."""
    answer = kube.request("GET", "/apis", accept=AGGREGATED_DISCOVERY)
    if answer.get("kind") == "APIGroupDiscoveryList":
        return served_from_aggregated(answer)
    # No aggregated discovery: ask only the groups of legacy kinds, one request per version.
    served: dict[tuple[str, str], list[str]] = {}
    for group in answer.get("groups") or []:
        name = group.get("name")
        if name not in planning.LEGACY_GROUPS:
            continue
        preferred = (group.get("preferredVersion") or {}).get("version")
        versions = [v["version"] for v in group.get("versions") or []]
        versions.sort(key=lambda v: v != preferred)
        for version in versions:
            listing = kube.get(f"/apis/{name}/{version}") or {}
            for resource in listing.get("resources") or []:
                if "/" not in resource["name"]:  # subresources are not kinds
                    served.setdefault((name, resource["name"]), []).append(version)
    return {key: tuple(value) for key, value in served.items()}


def served_from_aggregated(answer: dict[str, Any]) -> dict[tuple[str, str], tuple[str, ...]]:
    served: dict[tuple[str, str], list[str]] = {}
    for group in answer.get("items") or []:
        name = (group.get("metadata") or {}).get("name", "")
        for version in group.get("versions") or []:  # listed preferred first
            for resource in version.get("resources") or []:
                served.setdefault((name, resource["resource"]), []).append(version["version"])
    return {key: tuple(value) for key, value in served.items()}


@dataclass(frozen=True)
class Legacy:
    """Metadata of every legacy object the reads cover (None: absent), and the content digest
    of the user configuration's ConfigMaps that exist (compared with their backups)."""

    found: dict[planning.LegacyObject, dict[str, Any] | None]
    digests: dict[str, str]
    # The user configuration's ConfigMaps as read (a drift refusal shows what changed).
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_legacy(kube: Kube, reads: list[planning.Read], pool: Executor) -> Legacy:
    """Every legacy object the reads cover, read concurrently."""
    found: dict[planning.LegacyObject, dict[str, Any] | None] = {}
    digests: dict[str, str] = {}
    configs: dict[str, dict[str, Any]] = {}
    for read, items in zip(reads, pool.map(lambda r: _read(kube, r), reads), strict=True):
        for name in read.names:
            obj = planning.LegacyObject(read.kind, read.namespace, name)
            item = items.get(name)
            if item is not None and obj in planning.USER_CONFIG_MAPS:
                digests[name] = content_digest(item)
                configs[name] = item
                item = item["metadata"]
            found[obj] = item
    return Legacy(found, digests, configs)


def _read(kube: Kube, read: planning.Read) -> dict[str, dict[str, Any]]:
    """Name -> metadata (the whole object for the user configuration, whose data counts)."""
    kind = read.kind
    try:
        if read.by_list:
            path = resource_path(kind.group, read.version, kind.resource, read.namespace)
            wanted = set(read.names)
            return {
                item["metadata"]["name"]: item["metadata"]
                for item in kube.list(path, page_size=PAGE_SIZE, accept=METADATA_LIST)
                if item["metadata"]["name"] in wanted
            }
        name = read.names[0]
        path = resource_path(kind.group, read.version, kind.resource, read.namespace, name)
        if planning.LegacyObject(kind, read.namespace, name) in planning.USER_CONFIG_MAPS:
            whole = kube.get(path)
            return {name: whole} if whole else {}
        obj = kube.get(path, accept=METADATA_ONLY)
        return {name: obj["metadata"]} if obj else {}
    except ApiError as err:
        # Discovery can lag a CRD that was just removed: an unserved kind has no objects.
        if err.status == 404:
            return {}
        raise


def read_backups(kube: Kube) -> dict[str, dict[str, Any] | None]:
    """The backups of the user configuration (full: their digests are checked), by name."""
    return read_backup_namespace(kube).backups


@dataclass(frozen=True)
class BackupNamespace:
    namespace: dict[str, Any] | None  # metadata only; None: it does not exist
    backups: dict[str, dict[str, Any] | None]  # by source name
    preserved: list[dict[str, Any]]  # copies kept that cp-backup did not make


def read_backup_namespace(kube: Kube) -> BackupNamespace:
    """The backup namespace (is it Terminating?) and what it holds: one GET and one LIST of
    the (small) namespace instead of a GET per backup."""
    namespace = kube.get(BACKUP_NAMESPACE_PATH, accept=METADATA_ONLY)
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(kyma.SOURCES)
    preserved: list[dict[str, Any]] = []
    if namespace is None:
        return BackupNamespace(None, found, preserved)
    for item in kube.list(BACKUPS_PATH, page_size=PAGE_SIZE):
        name = item["metadata"]["name"]
        if name in found:
            found[name] = item
        elif backups.is_preserved(item):
            preserved.append(item)
    return BackupNamespace(namespace, found, preserved)


def review_rules(kube: Kube, namespace: str) -> access.Review:
    """What this identity may do in `namespace` (and cluster-wide): one SelfSubjectRulesReview.
    Every authenticated user may create one (system:basic-user); should that be taken away,
    or the API be missing, the review counts as incomplete and blocks nothing."""
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }
    try:
        # Creates nothing (the answer is computed, never stored): safe to repeat.
        answer = kube.request("POST", RULES_REVIEW_PATH, body=body, retry_safe=True)
    except ApiError as err:
        if err.status not in (403, 404):
            raise
        return access.Review(namespace, (), incomplete=True, error=str(err))
    return access.Review.from_status(namespace, answer.get("status") or {})


def read_mapping_crd(kube: Kube) -> dict[str, Any] | None:
    """The ServiceMapping CRD (its scope and versions are needed, so not metadata only)."""
    return kube.get(MAPPING_CRD_PATH)


def mapping_pages(
    kube: Kube, version: str, on_total: Callable[[int], None] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """ServiceMappings' metadata page by page, across all namespaces when they are namespaced
    (the collection path without a namespace lists every namespace). `on_total` learns the
    total from the first page when the apiserver tells it (remainingItemCount; for progress)."""
    path = resource_path(kyma.GROUP, version, planning.MAPPING_PLURAL)
    query: dict[str, str | int] = {"limit": PAGE_SIZE}
    while True:
        page = kube.request("GET", path, query=query, accept=METADATA_LIST)
        items = page.get("items") or []
        if on_total is not None and "continue" not in query:
            remaining = (page.get("metadata") or {}).get("remainingItemCount")
            on_total(len(items) + (remaining if isinstance(remaining, int) else 0))
        yield [item["metadata"] for item in items]
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return
        query["continue"] = token


def mapping_path(version: str, meta: dict[str, Any]) -> str:
    return resource_path(
        kyma.GROUP,
        version,
        planning.MAPPING_PLURAL,
        meta.get("namespace"),
        meta["name"],
    )


def mapping_ref(meta: dict[str, Any]) -> str:
    namespace = meta.get("namespace")
    return kyma.ref(namespace, str(meta["name"]))
