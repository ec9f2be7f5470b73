"""The backup step: observe -> plan -> apply -> verify -> mark, re-planned on a 409."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

from backup import plan as planning
from common import backups, kyma, reasons
from common.cluster.client import Kube, configmap_path, resource_path
from common.cr import crd_exists, get_cr, is_marked, mark, record_event, skip_reason
from common.errors import ApiError, RefusedError, RejectedWrite, RetryableError, StaleView
from common.logs import fields
from common.retry import replan_on_conflict

log = logging.getLogger("backup")

NAMESPACE_PATH = resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE)


@dataclass(frozen=True)
class Settings:
    dry_run: bool = False


@dataclass(frozen=True)
class Outcome:
    summary: str
    diff: str = ""
    changed: bool = False
    # Done, and yet a person should look: the reason code (common.reasons), else None.
    attention: str | None = None


class StaleBackup(StaleView):
    """A backup read back is not what this run wrote: another run wrote it since."""


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def backup(kube: Kube, settings: Settings) -> Outcome:
    """Run the step. A 409 (another pod wrote the same backup first, or the CR moved) means
    our view is stale: read everything again and re-plan, a bounded number of times."""
    return replan_on_conflict(
        lambda: _attempt(kube, settings), log=log, what="the CR, a source or a backup"
    )


# The namespace controller's conditions that say what a Terminating namespace waits for
# (every namespace carries the `kubernetes` finalizer, which alone says nothing).
_BLOCKING_CONDITIONS = (
    "NamespaceFinalizersRemaining",
    "NamespaceContentRemaining",
    "NamespaceDeletionContentFailure",
    "NamespaceDeletionDiscoveryFailure",
)


def _deletion_blockers(namespace: dict[str, Any]) -> str:
    """ "; waiting for: ..." from the namespace's status conditions, or "" when it has none."""
    found = [
        str(condition.get("message") or condition.get("type"))
        for condition in (namespace.get("status") or {}).get("conditions") or []
        if condition.get("type") in _BLOCKING_CONDITIONS and condition.get("status") == "True"
    ]
    return f"; waiting for: {'; '.join(found)}" if found else ""


def _attempt(kube: Kube, settings: Settings) -> Outcome:
    # The CR first: when it exists so does its CRD, which needs a look only after a 404 (to
    # say which of the two is missing). One request fewer on every run that has work to do.
    cr = get_cr(kube)
    crd = cr is not None or crd_exists(kube)
    skip = skip_reason(crd, cr, step="back up")
    if skip is not None or cr is None:
        log.info(skip, extra=fields(object=kyma.CR_REF))
        return Outcome(summary=f"nothing to do: {skip}")

    namespace = kube.get(NAMESPACE_PATH)
    sources = {name: kube.get(configmap_path(kyma.NAMESPACE, name)) for name in kyma.SOURCES}
    if (
        namespace is not None
        and namespace["metadata"].get("deletionTimestamp")
        and any(sources.values())
    ):
        finalizers = ", ".join((namespace.get("spec") or {}).get("finalizers") or []) or "none"
        raise RetryableError(
            f"namespace {kyma.BACKUP_NAMESPACE} is being deleted (Terminating; finalizers: "
            f"{finalizers}{_deletion_blockers(namespace)}), so no backup can be kept in it; "
            "once it is gone, a later run creates it again",
            reason=reasons.BACKUP_NAMESPACE_TERMINATING,
        )
    # One LIST of the (small) backup namespace: the backups, and the copies kept of backups
    # another tool made (their names derive from their content, so they are not read by name).
    present = (
        {
            item["metadata"]["name"]: item
            for item in kube.list(configmap_path(kyma.BACKUP_NAMESPACE))
        }
        if namespace
        else {}
    )
    found = {name: present.get(name) for name in kyma.SOURCES}
    preserved = {
        name: present.get(backups.preserved_name(name, backup))
        for name, backup in found.items()
        if backup is not None
        and (source := sources.get(name))
        and planning.preserve_problem(backup, source)
    }
    inputs = planning.BackupInputs(
        sources=sources,
        backups=found,
        namespace_exists=namespace is not None,
        now=now(),
        cr=cr,
        preserved=preserved,
    )
    plan = planning.plan_backup(inputs)
    if not plan.writes and not plan.create_namespace and not plan.needs_mark(cr):
        log.info("already backed up and verified; nothing to do", extra=fields(object=kyma.CR_REF))
        return Outcome(
            summary=f"nothing to do: {kyma.CR_REF} is already backed up" + _missing(plan),
            attention=_incomplete(plan, found),
        )
    if is_marked(cr, kyma.ANNOTATION_BACKED_UP):
        log.info(
            "marked backed up, but the backups are not all verified copies of ours; backing up",
            extra=fields(object=kyma.CR_REF),
        )
    if plan.create_namespace:
        log.info("namespace is absent; creating it", extra=fields(object=kyma.BACKUP_NAMESPACE))
    for action in plan.actions:
        level = (
            logging.WARNING
            if action.verb in (planning.MISSING, planning.PRESERVE)
            else logging.INFO
        )
        log.log(level, f"{action.verb}: {action.reason}", extra=fields(object=action.object))

    rendered = planning.render(plan.actions)
    if settings.dry_run:
        planned = [f"{a.verb} {a.object}" for a in plan.writes]
        if plan.create_namespace:
            planned.insert(0, f"create namespace {kyma.BACKUP_NAMESPACE}")
        return Outcome(
            summary="dry run: would "
            + (", ".join(planned) or "write nothing")
            + f", then mark {kyma.CR_REF} backed up",
            diff=rendered,
        )

    if plan.create_namespace:
        # A 409 here means another pod created it first: the retry loop re-observes.
        kube.create(
            resource_path("", "v1", "namespaces"),
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": kyma.BACKUP_NAMESPACE,
                    "labels": {kyma.BACKUP_LABEL: kyma.BACKUP_LABEL_VALUE},
                },
            },
        )
    for action in plan.writes:
        assert action.after is not None
        name = action.after["metadata"]["name"]
        if action.verb in (planning.CREATE, planning.PRESERVE):
            # A 409 (another run made it first) re-observes: the copy is then found.
            kube.create(configmap_path(kyma.BACKUP_NAMESPACE), action.after)
        elif action.verb == planning.REPLACE:
            _replace(kube, action)
        else:
            # PUT carries the resourceVersion we read: a concurrent change is a 409, not lost.
            kube.replace(configmap_path(kyma.BACKUP_NAMESPACE, name), action.after)
        done = "preserved the earlier copy" if action.verb == planning.PRESERVE else "the backup"
        log.info(f"{action.verb}d {done}", extra=fields(object=action.object))

    _verify(kube, plan)
    # Marked last, and only under the CR's resourceVersion we started from.
    marked = mark(kube, cr, plan.mark_annotations())
    log.info(
        "backed up and marked",
        extra=fields(
            object=kyma.CR_REF,
            annotation=kyma.ANNOTATION_BACKED_UP,
            missing=backups.format_missing(plan.missing) or None,
        ),
    )
    copied = len(plan.expected_digests)
    message = f"cp-backup keeps a verified copy of {copied} ConfigMap(s) in {kyma.BACKUP_NAMESPACE}"
    message += _missing(plan)
    record_event(kube, marked, "BackedUp", message, "cp-backup")
    return Outcome(
        summary=message,
        diff=rendered,
        changed=True,
        attention=_incomplete(plan, found),
    )


def _incomplete(plan: planning.BackupPlan, found: dict[str, dict[str, Any] | None]) -> str | None:
    """Done, and yet a person should look: a source is missing and no copy of it is kept (a
    source the cleaner removed after it was backed up has its copy)."""
    lost = [name for name in plan.missing if found.get(name) is None]
    return reasons.BACKUP_INCOMPLETE if lost else None


def _missing(plan: planning.BackupPlan) -> str:
    if not plan.missing:
        return ""
    return f"; missing from {kyma.NAMESPACE}: {', '.join(plan.missing)}"


def _replace(kube: Kube, action: planning.Action) -> None:
    """Replace an immutable copy: delete it under its uid, then create the new one. Its content
    is kept first (the plan preserved it, unless it is identical to the source, which exists):
    read that copy back before the delete, so there is never a moment without it."""
    assert action.before is not None and action.after is not None
    name = action.before["metadata"]["name"]
    kept_as = backups.preserved_name(name, action.before)
    if planning.preserve_problem(action.before, action.after) is not None:
        # A LIST, the read cp-backup is granted in this namespace (the name is not known ahead).
        kept = next(
            (
                item
                for item in kube.list(configmap_path(kyma.BACKUP_NAMESPACE))
                if item["metadata"]["name"] == kept_as
            ),
            None,
        )
        if (
            kept is None
            or backups.digest_problem(kept) is not None
            or backups.content_digest(kept) != backups.content_digest(action.before)
        ):
            raise StaleBackup(
                f"the copy {kyma.BACKUP_NAMESPACE}/{kept_as} that keeps the content of the "
                "immutable "
                f"{action.object} is not there or does not verify; {action.object} is not "
                "replaced"
            )
    try:
        kube.delete(
            configmap_path(kyma.BACKUP_NAMESPACE, name), uid=action.before["metadata"]["uid"]
        )
    except ApiError as err:
        note = (
            f"Its content is already preserved as {kyma.BACKUP_NAMESPACE}/{kept_as} (verified), so "
            f"deleting it loses nothing: kubectl delete configmap -n {kyma.BACKUP_NAMESPACE} {name}"
        )
        if err.status == 403 and not isinstance(err, RejectedWrite):
            # RBAC: a grant fixes it (deploy/rbac.yaml), so a retry may too.
            raise RetryableError(
                f"ConfigMap {action.object} is immutable and cp-backup may not delete it to "
                f"replace it: {err.api_message}. Grant it (deploy/rbac.yaml), or: {note}"
            ) from err
        if not isinstance(err, RejectedWrite):
            raise  # a 409 (replaced meanwhile) re-observes
        raise RefusedError(
            f"ConfigMap {action.object} is immutable and cp-backup cannot replace it: the delete "
            f"was refused ({err.status} {err.reason}: {err.api_message}). {note}; the next run "
            "writes the new backup",
        ) from err
    log.info(
        "deleted the immutable copy (its content is kept)",
        extra=fields(object=action.object, kept_as=f"{kyma.BACKUP_NAMESPACE}/{kept_as}"),
    )
    kube.create(configmap_path(kyma.BACKUP_NAMESPACE), action.after)


def _verify(kube: Kube, plan: planning.BackupPlan) -> None:
    """Read every backup back (one LIST, the read the observation made too): the CR is marked
    only when what is stored is what we meant."""
    problems = []
    found = {
        item["metadata"]["name"]: item for item in kube.list(configmap_path(kyma.BACKUP_NAMESPACE))
    }
    for name, digest in plan.expected_digests.items():
        stored = found.get(name)
        problem = planning.readback_problem(stored, digest)
        if problem:
            problems.append(f"ConfigMap {kyma.BACKUP_NAMESPACE}/{name}: {problem}")
        else:
            log.info(
                "verified the backup's digest",
                extra=fields(object=kyma.ref(kyma.BACKUP_NAMESPACE, name)),
            )
    if problems:
        raise StaleBackup(
            "a backup read back does not match its source; the CR is not marked", details=problems
        )
