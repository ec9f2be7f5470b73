"""The cleaner step: observe -> plan -> check permissions -> apply -> mark.

Reads: one discovery request, then per legacy kind and namespace a GET by name (one name) or a
metadata-only LIST (several names; never for Secrets, ConfigMaps, Deployments, which are read
by name so that RBAC need not grant `list` on them): it shows each object's labels and
ownerReferences, which the "owned by the module" rule needs before anything is deleted. Before
the first write, one SelfSubjectRulesReview per namespace written in shows whether every
planned write is allowed (cleaner.access); if one is not, nothing is written. Each DELETE then
carries the uid that was read, so an object replaced in between is never deleted on the
strength of what its predecessor looked like.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cleaner import access, observe, progress
from cleaner import plan as planning
from common import kyma, reasons
from common.cluster.client import MERGE_PATCH, METADATA_ONLY, Kube, resource_path
from common.cr import crd_exists, get_cr, is_marked, mark, record_event, skip_reason
from common.errors import ApiError, CpError, RefusedError, RejectedWrite, RetryableError, StaleView
from common.logs import fields
from common.retry import replan_on_conflict
from common.runner import STEP_TODO

log = logging.getLogger("cleaner")

MAX_ATTEMPTS = 3
# Matches the Kube client's connection pool (16): more threads would only queue for a socket.
WORKERS = 16
# Patches in flight at most, so thousands of ServiceMappings never pile up in memory.
MAX_PENDING = 4 * WORKERS
# What a signal leaves undone (the interrupt line, common.runner): all of it until the phases
# start, then what the phases did not finish and the mark.
MARK_TODO = f"the mark {kyma.ANNOTATION_CLEANED} on {kyma.CR_REF}"
START_TODO = (
    f"all of it: the legacy objects to delete, the ServiceMappings to hand over, {MARK_TODO}"
)


@dataclass(frozen=True)
class Settings:
    dry_run: bool = False


@dataclass(frozen=True)
class Outcome:
    summary: str
    report: str = ""  # the dry run's three lists
    changed: bool = False
    # A dry run still shows its lists when the real run would be refused; the CLI raises this.
    refusal: CpError | None = None


@dataclass
class _Handover:
    total: int = 0
    patched: int = 0
    would_patch: list[str] = field(default_factory=list)


class _Moved(StaleView):
    """An object changed between observe and apply (a uid precondition failed): re-plan."""

    def __init__(self, ref: str) -> None:
        super().__init__(
            f"{ref} keeps changing while the cleaner works; a later run will try again"
        )
        self.ref = ref


def clean(kube: Kube, settings: Settings, ledger: progress.Ledger | None = None) -> Outcome:
    """Run the step; `ledger` (the run's, from cleaner.progress.start) records what is done."""
    ledger = ledger or progress.Ledger()
    cr = get_cr(kube)
    # A CR that exists proves its CRD does; the CRD is looked up only to say why there is none.
    skip = skip_reason(cr is not None or crd_exists(kube), cr, step="clean")
    if skip is not None or cr is None:
        log.info(skip, extra=fields(object=kyma.CR_REF))
        return Outcome(summary=f"nothing to do: {skip}")
    if not is_marked(cr, kyma.ANNOTATION_MIGRATED):
        statefulset = kube.get(observe.LEGACY_STATEFULSET_PATH, accept=METADATA_ONLY)
        skip = planning.not_migrated(cr, statefulset)  # raises while a legacy installation runs
        log.info(skip, extra=fields(object=kyma.CR_REF))
        return Outcome(summary=f"nothing to do: {skip}")
    refusal = planning.refusal_before_backup(cr)
    if refusal:
        raise RefusedError(refusal, reason=reasons.NOT_BACKED_UP)
    if not settings.dry_run:
        # Until the phases start (after observing), what a signal leaves undone is all of it.
        ledger.fulfil(STEP_TODO)
        ledger.expect(START_TODO)

    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="cp-cleaner")
    try:
        return replan_on_conflict(
            lambda: _attempt(kube, settings, cr, pool, ledger),
            log=log,
            what="an object the cleaner read",
            max_attempts=MAX_ATTEMPTS,
        )
    finally:
        # On a signal (or any failure): the requests in flight finish, those not yet sent are
        # dropped, so the interrupt line (common.runner) counts exactly what was done.
        pool.shutdown(wait=True, cancel_futures=True)


def _observe(kube: Kube, cr: dict[str, Any], pool: Executor) -> planning.Inputs:
    backups_read = pool.submit(observe.read_backup_namespace, kube)
    crd_read = pool.submit(observe.read_mapping_crd, kube)
    reads, skipped = planning.reads(observe.discover(kube))
    for kind in skipped:
        log.info("kind not served by this cluster; skipped", extra=fields(kind=kind.name))
    found = observe.read_legacy(kube, reads, pool)
    backup_namespace = backups_read.result()
    return planning.Inputs(
        cr=cr,
        found=found.found,
        versions={read.kind: read.version for read in reads},
        skipped_kinds=tuple(skipped),
        backups=backup_namespace.backups,
        mapping_crd=crd_read.result(),
        backup_namespace=backup_namespace.namespace,
        live_digests=found.digests,
        live_configs=found.configs,
    )


def _attempt(
    kube: Kube, settings: Settings, cr: dict[str, Any], pool: Executor, ledger: progress.Ledger
) -> Outcome:
    plan = planning.plan(_observe(kube, cr, pool))
    for obj in plan.gone:
        log.debug("already gone", extra=fields(object=obj.ref, kind=obj.kind.name))
    for kept in plan.kept:
        log.info(f"kept: {kept.reason}", extra=fields(object=kept.what))
    refusal: CpError | None = None
    if plan.waits:
        refusal = RetryableError(
            f"not cleaning {kyma.CR_REF} yet: nothing was deleted",
            details=plan.waits + plan.refusals,
            reason=plan.wait_reason or reasons.CLEANUP_WAITING,
        )
    elif plan.refusals:
        refusal = RefusedError(
            f"refusing to clean {kyma.CR_REF}: nothing was deleted",
            details=plan.refusals,
            reason=reasons.CLEANUP_REFUSED,
        )

    if settings.dry_run:
        # The report (stdout) lists each decision; the log only says what was read.
        handover = _hand_over(kube, plan, pool, ledger, dry_run=True)
        return Outcome(
            summary=f"dry run: would delete {len(plan.all_deletes)} object(s), patch "
            f"{len(handover.would_patch) + bool(plan.crd_patch)} object(s), keep "
            f"{len(plan.kept)}; nothing changed",
            report=planning.render(plan, handover.would_patch),
            refusal=refusal,
        )
    if refusal:
        raise refusal
    _check_access(kube, plan, pool)
    _check_admission(kube, plan, pool)

    ledger.fulfil(START_TODO)
    ledger.expect(MARK_TODO)
    with ledger.phase(
        "legacy object(s)", "deleted", "to delete", total=len(plan.all_deletes)
    ) as deletions:
        deleted = sum(
            _delete(kube, delete, ledger, deletions, first=True) for delete in plan.deletes_first
        )
        handover = _hand_over(kube, plan, pool, ledger, dry_run=False)
        deleted += sum(
            pool.map(lambda delete: _delete(kube, delete, ledger, deletions), plan.deletes)
        )
    gone = len(plan.all_deletes) - deleted + len(plan.gone)
    marked = _mark(kube, cr)
    ledger.fulfil(MARK_TODO)
    ledger.note(f"{kyma.CR_REF} marked cleaned")
    message = (
        f"cp-cleaner removed {deleted} legacy object(s) ({gone} already gone, {len(plan.kept)} "
        f"kept) and handed {handover.total} ServiceMapping(s) to the module "
        f"({handover.patched} patched)"
    )
    record_event(kube, marked, "Cleaned", message, "cp-cleaner")
    return Outcome(summary=f"{message}; marked {kyma.CR_REF} cleaned", changed=True)


def _check_access(kube: Kube, plan: planning.Plan, pool: Executor) -> None:
    """Stop before the first write when a planned write is not allowed, so a missing permission
    never leaves the legacy installation half deleted: one rules review per namespace written
    in (kyma-system, istio-system), evaluated locally."""
    planned = access.writes(plan)
    names = access.namespaces(planned)
    reviews = dict(
        zip(names, pool.map(lambda ns: observe.review_rules(kube, ns), names), strict=True)
    )
    verdict = access.check(planned, reviews)
    for write in verdict.unverified:
        review = reviews[write.namespace or access.CLUSTER_SCOPE_REVIEW]
        log.info(
            "permission not shown by an incomplete rules review; trying anyway",
            extra=fields(
                object=write.ref,
                verb=write.verb,
                kind=write.kind,
                why=review.error or "incomplete",
            ),
        )
    if verdict.denied:
        raise RetryableError(
            f"missing permission for {len(verdict.denied)} planned write(s); nothing was "
            "changed. Grant them (see deploy/rbac.yaml), then run again",
            details=[str(write) for write in verdict.denied],
            reason=reasons.FORBIDDEN,
        )


ADMISSION_REMEDY = (
    "Change each object as the policy's message asks, or have the policy's owner allow these "
    "deletes; the next run of cp-cleaner (the kubelet retries the init container) then cleans"
)


def _check_admission(kube: Kube, plan: planning.Plan, pool: Executor) -> None:
    """Send every planned delete as a server-side dry run (dryRun=All), which runs the
    validating admission policies and webhooks the RBAC preflight cannot see. One denied is
    enough to delete nothing: the legacy installation keeps running until every delete is
    known to be allowed."""

    def dry_run(delete: planning.Delete) -> str | None:
        target = delete.target
        kind = target.kind
        path = resource_path(
            kind.group, delete.version, kind.resource, target.namespace, target.name
        )
        try:
            kube.delete(
                path, uid=delete.uid, resource_version=delete.resource_version, dry_run=True
            )
        except RejectedWrite as err:
            return f"{kind.name} {target.ref}: {err.policy or err.reason}: {err.api_message}"
        except ApiError as err:
            if err.status == 409:
                raise _Moved(target.ref) from err
            raise
        return None

    denied = [found for found in pool.map(dry_run, plan.all_deletes) if found]
    for line in denied:
        log.warning(
            f"admission control denies the delete: {line}", extra=fields(object=kyma.CR_REF)
        )
    if denied:
        raise RefusedError(
            f"refusing to clean {kyma.CR_REF}: admission control denies {len(denied)} of "
            f"{len(plan.all_deletes)} planned delete(s) (server-side dry run); nothing was "
            f"deleted and the legacy installation keeps running. {ADMISSION_REMEDY}",
            details=denied,
        )
    log.info(
        "admission control allows every planned delete (server-side dry run)",
        extra=fields(object=kyma.CR_REF, deletes=len(plan.all_deletes)),
    )


def _delete(
    kube: Kube,
    delete: planning.Delete,
    ledger: progress.Ledger,
    deletions: progress.Phase | None = None,
    *,
    first: bool = False,
) -> bool:
    """Delete one object under its preconditions; False when it was already gone."""
    target = delete.target
    kind = target.kind
    path = resource_path(kind.group, delete.version, kind.resource, target.namespace, target.name)
    try:
        existed = kube.delete(path, uid=delete.uid, resource_version=delete.resource_version)
    except ApiError as err:
        if err.status != 409:
            raise
        # Replaced or changed since it was read (for the user configuration: since its data
        # was compared with its backup): read everything again and decide anew.
        raise _Moved(target.ref) from err
    log.info(
        f"deleted: {delete.reason}" if existed else "already gone",
        extra=fields(object=target.ref, kind=kind.name),
    )
    if deletions is not None:
        deletions.advance()
    if first:
        ledger.note(f"{kind.name} {target.ref} deleted first")
    return existed


def _hand_over(
    kube: Kube, plan: planning.Plan, pool: Executor, ledger: progress.Ledger, *, dry_run: bool
) -> _Handover:
    """Label and annotate the ServiceMapping CRD and every ServiceMapping for the module."""
    result = _Handover()
    if plan.mapping_version is None:
        log.info(
            "ServiceMappings: no served CRD; nothing to hand over",
            extra=fields(object=planning.MAPPING_CRD),
        )
        return result
    if plan.crd_patch and not dry_run:
        # Labels and annotations merge idempotently: no precondition needed, a repeat is a no-op.
        kube.merge_patch(observe.MAPPING_CRD_PATH, plan.crd_patch.patch, retry_safe=True)
        log.info("handed over the CRD", extra=fields(object=planning.MAPPING_CRD))
    version = plan.mapping_version
    pending: deque[Future[None]] = deque()
    with contextlib.ExitStack() as stack:
        phase: progress.Phase | None = None
        if not dry_run:
            phase = stack.enter_context(
                ledger.phase("ServiceMappings", "handed over", "to hand over")
            )
        for page in observe.mapping_pages(kube, version, phase.set_total if phase else None):
            for meta in page:
                result.total += 1
                patch = planning.handover_patch(meta)
                if patch is None:
                    if phase is not None:
                        phase.advance()
                    continue
                result.patched += 1
                if dry_run:
                    result.would_patch.append(
                        f"{planning.MAPPING_PLURAL}.{kyma.GROUP} "
                        f"{observe.mapping_ref(meta)}  (hand over to the module)"
                    )
                    continue
                pending.append(pool.submit(_patch_mapping, kube, version, meta, patch, phase))
                while len(pending) > MAX_PENDING:
                    pending.popleft().result()
        while pending:
            pending.popleft().result()
        if phase is not None:
            phase.set_total(result.total)
    log.info(
        "ServiceMappings handed over" if not dry_run else "ServiceMappings to hand over",
        extra=fields(
            object=planning.MAPPING_CRD,
            total=result.total,
            patched=result.patched,
            already=result.total - result.patched,
            scope="Namespaced" if plan.mappings_namespaced else "Cluster",
        ),
    )
    return result


def _patch_mapping(
    kube: Kube,
    version: str,
    meta: dict[str, Any],
    patch: dict[str, Any],
    phase: progress.Phase | None = None,
) -> None:
    # No uid precondition: a mapping recreated meanwhile must be handed over just the same, and
    # merging labels and annotations is idempotent, so a repeat (retry, rerun) is harmless.
    try:
        # Metadata-only answer: the apiserver serialises, and we parse, a fraction of each object.
        kube.request(
            "PATCH",
            observe.mapping_path(version, meta),
            body=patch,
            content_type=MERGE_PATCH,
            accept=METADATA_ONLY,
            retry_safe=True,
        )
    except ApiError as err:
        if err.status != 404:  # deleted meanwhile: nothing left to hand over
            raise
    else:
        log.debug("handed over", extra=fields(object=observe.mapping_ref(meta)))
    if phase is not None:
        phase.advance()


def _mark(kube: Kube, cr: dict[str, Any]) -> dict[str, Any]:
    """Mark the CR cleaned under its resourceVersion; the operator may update the CR meanwhile,
    so a 409 re-reads it and re-checks the gate before marking again."""
    read: list[dict[str, Any]] = []  # empty on the first attempt: `cr` is fresh then

    def attempt() -> dict[str, Any]:
        current = cr
        if read:
            found = get_cr(kube)
            if found is None:
                raise RetryableError(
                    f"ConnectivityProxy {kyma.CR_REF} disappeared before it was marked"
                )
            if is_marked(found, kyma.ANNOTATION_CLEANED, kyma.ANNOTATION_CLEANED_OLD):
                # Our own earlier attempt landed (its answer was lost) or another pod got
                # there first: marking again would be a second write for nothing.
                log.info("already marked cleaned", extra=fields(object=kyma.CR_REF))
                return found
            refusal = planning.refusal_before_backup(found)
            if refusal:
                raise RefusedError(refusal, reason=reasons.NOT_BACKED_UP)
            current = found
        read.append(current)
        marked = mark(kube, current, {kyma.ANNOTATION_CLEANED: "true"})
        log.info(
            "cleaned and marked",
            extra=fields(object=kyma.CR_REF, annotation=kyma.ANNOTATION_CLEANED),
        )
        return marked

    return replan_on_conflict(attempt, log=log, what=kyma.CR_REF, max_attempts=MAX_ATTEMPTS)
