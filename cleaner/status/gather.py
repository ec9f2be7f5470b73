"""Reading the cluster into a `model.Status`. Read-only: it only GETs and LISTs.

Each part is read on its own (concurrently): a part it may not read is reported as
`Unreadable`, not a failure. No answer at all (ConnectionFailed) is not caught: then cp-status
fails (exit 1). The functions below the reads turn what was read into the model; they are
pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from cleaner import observe
from cleaner import plan as planning
from cleaner.status.model import (
    Backup,
    BackupItem,
    Cr,
    Crd,
    Legacy,
    Operator,
    PreservedCopy,
    ServiceMappings,
    Status,
    Unreadable,
)
from common import backups, kyma, legacy
from common.cluster.client import METADATA_ONLY, Kube, resource_path
from common.cr import annotations_of, crd_exists, get_cr, is_marked
from common.errors import ApiError
from common.record import Record

OPERATOR_PATH = resource_path("apps", "v1", "deployments", kyma.NAMESPACE, kyma.OPERATOR_DEPLOYMENT)
WORKERS = 8

T = TypeVar("T")
U = TypeVar("U")


def gather(kube: Kube) -> Status:
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="cp-status") as pool:
        cr = pool.submit(_part, lambda: get_cr(kube))
        crd = pool.submit(_part, lambda: Crd(crd_exists(kube)))
        backup_namespace = pool.submit(_part, lambda: observe.read_backup_namespace(kube))
        mappings = pool.submit(_part, lambda: _mappings(kube))
        operator = pool.submit(_part, lambda: _operator(kube))
        legacy = _part(lambda: _legacy(kube, pool))
        found_cr = cr.result()
        found_backups = backup_namespace.result()
        found_crd, found_mappings, found_operator = (
            crd.result(),
            mappings.result(),
            operator.result(),
        )
    annotations = annotations_of(found_cr) if isinstance(found_cr, dict) else {}
    live = {} if isinstance(legacy, Unreadable) else legacy[1]
    configs = {} if isinstance(legacy, Unreadable) else legacy[2]
    whole_cr = found_cr if isinstance(found_cr, dict) else None
    return Status(
        legacy=_then(legacy, lambda read: read[0]),
        crd=found_crd,
        cr=_then(found_cr, cr_of),
        backup=_then(
            found_backups,
            lambda read: backup_of(read, live, annotations, cr=whole_cr, configs=configs),
        ),
        service_mappings=found_mappings,
        operator=found_operator,
    )


def _part(read: Callable[[], T]) -> T | Unreadable:
    """One part of the status; an apiserver error (403, 500, ...) is reported in its place."""
    try:
        return read()
    except ApiError as err:
        if err.status == 403:
            return Unreadable(f"forbidden: {err.method} {err.path}: {err.api_message}", 403)
        return Unreadable(str(err), err.status)


def _then(found: T | Unreadable, make: Callable[[T], U]) -> U | Unreadable:
    return found if isinstance(found, Unreadable) else make(found)


def _deleting(meta: Mapping[str, Any] | None) -> bool:
    return bool(meta and meta.get("deletionTimestamp"))


def _operator(kube: Kube) -> Operator:
    deployment = kube.get(OPERATOR_PATH, accept=METADATA_ONLY)
    return Operator(
        exists=deployment is not None,
        being_deleted=_deleting((deployment or {}).get("metadata")),
    )


def _legacy(
    kube: Kube, pool: ThreadPoolExecutor
) -> tuple[Legacy, dict[str, str], dict[str, dict[str, Any]]]:
    """The legacy part, and the content digests of the live user-configuration ConfigMaps
    (which the backup part compares its copies with)."""
    reads, skipped = planning.reads(observe.discover(kube))
    read = observe.read_legacy(kube, reads, pool)
    return legacy_of(read, skipped), dict(read.digests), dict(read.configs)


def _mappings(kube: Kube) -> ServiceMappings:
    """Counted page by page: a cluster may have many thousands."""
    crd = observe.read_mapping_crd(kube)
    if crd is None:
        return ServiceMappings(crd_exists=False)
    version = planning.mapping_version(crd)
    total = handed_over = deleting = 0
    if version is not None:
        for page in observe.mapping_pages(kube, version):
            total += len(page)
            handed_over += sum(planning.handover_patch(meta) is None for meta in page)
            deleting += sum(_deleting(meta) for meta in page)
    return ServiceMappings(
        crd_exists=True,
        crd_being_deleted=_deleting(crd.get("metadata")),
        crd_handed_over=planning.handover_patch(crd.get("metadata") or {}) is None,
        scope=(crd.get("spec") or {}).get("scope"),
        total=total,
        handed_over=handed_over,
        being_deleted=deleting,
    )


# -- what was read, as the model (pure) ---------------------------------------------------------


def legacy_of(read: observe.Legacy, skipped: list[planning.Kind]) -> Legacy:
    remaining: list[str] = []
    kept: list[str] = []
    deleting: list[str] = []
    for obj in planning.LEGACY_OBJECTS:
        meta = read.found.get(obj)
        if meta is None:
            continue
        owned = legacy.owned_by_module(meta)
        if owned:
            kept.append(f"{obj}: {owned}")
        else:
            remaining.append(str(obj))
            if _deleting(meta):
                deleting.append(str(obj))
    return Legacy(
        remaining=tuple(remaining),
        being_deleted=tuple(deleting),
        kept_by_module=tuple(kept),
        kinds_not_served=tuple(kind.name for kind in skipped),
    )


def cr_of(cr: dict[str, Any] | None) -> Cr:
    if cr is None:
        return Cr(exists=False)
    return Cr(
        exists=True,
        being_deleted=_deleting(cr.get("metadata")),
        state=(cr.get("status") or {}).get("state"),
        migrated=is_marked(cr, kyma.ANNOTATION_MIGRATED),
        backed_up=is_marked(cr, kyma.ANNOTATION_BACKED_UP),
        cleaned=is_marked(cr, kyma.ANNOTATION_CLEANED, kyma.ANNOTATION_CLEANED_OLD),
        orphaned_legacy_config=annotations_of(cr).get(kyma.ANNOTATION_ORPHANED) or None,
        record=Record.of(annotations_of(cr)),
    )


def backup_of(
    read: observe.BackupNamespace,
    live_digests: Mapping[str, str],
    cr_annotations: Mapping[str, str],
    *,
    cr: Mapping[str, Any] | None = None,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Backup:
    """The backups, each checked against its live ConfigMap (`live_digests`: the ones that
    exist) and against what the CR's annotations record (migrated digests, missing sources)."""
    missing_at_backup = backups.parse_missing(cr_annotations.get(kyma.MISSING_SOURCES_ANNOTATION))
    migrated = backups.parse_digests(cr_annotations.get(kyma.MIGRATED_DIGESTS_ANNOTATION))
    items: list[BackupItem] = []
    for name in kyma.SOURCES:
        backup = read.backups.get(name)
        if backup is None:
            items.append(
                BackupItem(name, present=False, missing_at_backup=name in missing_at_backup)
            )
            continue
        live = live_digests.get(name)
        problem = planning.user_config_problem(
            name,
            backup,
            live_digest=live,
            namespace=read.namespace,
            migrated_digest=migrated.get(name),
            cr=cr,
            live=(configs or {}).get(name),
        )
        items.append(
            BackupItem(
                name,
                present=True,
                being_deleted=_deleting(backup.get("metadata")),
                problem=backups.backup_problem(backup, name),
                live_exists=live is not None,
                not_safe=problem.message if problem else None,
            )
        )
    return Backup(
        namespace_exists=read.namespace is not None,
        terminating=_deleting((read.namespace or {}).get("metadata")),
        items=tuple(items),
        preserved=tuple(
            PreservedCopy(
                name=copy["metadata"]["name"],
                copy_of=copy["metadata"]["labels"].get(kyma.PRESERVED_LABEL),
                reason=(copy["metadata"].get("annotations") or {}).get(
                    kyma.PRESERVED_REASON_ANNOTATION
                ),
            )
            for copy in read.preserved
        ),
    )
