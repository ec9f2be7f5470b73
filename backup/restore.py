"""cp-restore: verify the backups, then bring both ConfigMaps back into kyma-system."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from backup import plan as planning
from backup.core import Outcome
from common import backups, diff, kyma
from common.backups import content_digest
from common.cluster.client import Kube, configmap_path
from common.cr import CR_PATH, get_cr
from common.errors import RefusedError, RetryableError
from common.logs import fields
from common.retry import replan_on_conflict

log = logging.getLogger("restore")


@dataclass(frozen=True)
class Settings:
    dry_run: bool = False
    force: bool = False
    # Preserved copies (names in the backup namespace) to restore instead of the backups.
    from_preserved: tuple[str, ...] = ()
    # The CR's own values the migration replaced: shown, and with force put back.
    cr_values: bool = False


def restore(kube: Kube, settings: Settings) -> Outcome:
    """Run the restore; a 409 (the target was created or changed meanwhile, for example by
    the reconciler) means our view is stale: read again and re-plan, a bounded number of times."""
    return replan_on_conflict(
        lambda: _attempt(kube, settings), log=log, what="a backup or its target ConfigMap"
    )


def _attempt(kube: Kube, settings: Settings) -> Outcome:
    if settings.cr_values:
        return _cr_values(kube, settings)
    found = {name: kube.get(configmap_path(kyma.BACKUP_NAMESPACE, name)) for name in kyma.SOURCES}
    for copy_name in settings.from_preserved:
        copy = kube.get(configmap_path(kyma.BACKUP_NAMESPACE, copy_name))
        copy_of = ((copy or {}).get("metadata") or {}).get("labels", {}).get(kyma.PRESERVED_LABEL)
        if copy is None or copy_of not in kyma.SOURCES:
            raise RefusedError(
                f"ConfigMap {kyma.BACKUP_NAMESPACE}/{copy_name} is not a preserved copy (no label "
                f"{kyma.PRESERVED_LABEL} naming {' or '.join(kyma.SOURCES)}); cp-status "
                "lists the preserved copies"
            )
        log.info(
            f"restoring {copy_of} from the preserved copy, as asked",
            extra=fields(object=kyma.ref(kyma.BACKUP_NAMESPACE, copy_name)),
        )
        found[copy_of] = copy
    inputs = planning.RestoreInputs(
        backups=found,
        targets={name: kube.get(configmap_path(kyma.NAMESPACE, name)) for name in kyma.SOURCES},
        force=settings.force,
    )
    actions = planning.plan_restore(inputs)
    for action in actions:
        level = logging.WARNING if action.verb == planning.MISSING else logging.INFO
        log.log(level, f"{action.verb}: {action.reason}", extra=fields(object=action.object))
    rendered = planning.render(actions)
    writes = [action for action in actions if action.writes]
    if settings.dry_run:
        planned = ", ".join(f"{a.verb} {a.object}" for a in writes)
        return Outcome(summary=f"dry run: would {planned or 'change nothing'}", diff=rendered)
    if not writes:
        return Outcome(summary="nothing to do: every ConfigMap is identical to its backup")

    for action in writes:
        assert action.after is not None
        name = action.after["metadata"]["name"]
        if action.verb == planning.CREATE:
            written = kube.create(configmap_path(kyma.NAMESPACE), action.after)
        else:
            # The body carries the resourceVersion and uid we read: a change since is a 409.
            written = kube.replace(configmap_path(kyma.NAMESPACE, name), action.after)
        backup = inputs.backups[name]
        assert backup is not None
        if content_digest(written) != content_digest(backup):
            raise RetryableError(
                f"ConfigMap {action.object} was written, but what the apiserver stored differs "
                f"from the backup {kyma.BACKUP_NAMESPACE}/{name}; run cp-restore again"
            )
        log.info(f"{action.verb}d from the backup", extra=fields(object=action.object))
    return Outcome(
        summary="restored " + ", ".join(a.object for a in writes),
        diff=rendered,
        changed=True,
    )


def _cr_values(kube: Kube, settings: Settings) -> Outcome:
    """The values of the CR's spec.config that the migration replaced (cp-migrator kept them,
    verified): shown against the CR now; with --force (not --dry-run) merged back into it,
    under the CR's resourceVersion."""
    ref = kyma.ref(kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP)
    record = kube.get(configmap_path(kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP))
    if record is None:
        raise RefusedError(
            f"there is no ConfigMap {ref}: the migration replaced none of the values set in "
            f"ConnectivityProxy {kyma.CR_REF} (or it ran before cp-migrator kept them)"
        )
    problem = backups.cr_values_problem(record)
    if problem:
        raise RefusedError(f"ConfigMap {ref} cannot be trusted: {problem}")
    values = backups.cr_values_of(record)
    cr = get_cr(kube)
    if cr is None:
        raise RetryableError(f"ConnectivityProxy {kyma.CR_REF} does not exist")
    now_config = (cr.get("spec") or {}).get("config") or {}
    rendered = diff.unified(
        {"spec": {"config": _at_paths(now_config, values)}},
        {"spec": {"config": values}},
        f"{kyma.CR_REF} (now)",
        f"{kyma.CR_REF} (before the migration, from {ref})",
    )
    if not settings.force or settings.dry_run:
        what = "would put them back" if settings.dry_run and settings.force else "--force puts"
        return Outcome(
            summary=f"the CR's values from before the migration, kept in {ref}; {what} "
            "them back into the CR"
            if rendered
            else f"the CR already holds the values kept in {ref}; nothing to put back",
            diff=rendered,
        )
    patch = {
        "metadata": {"resourceVersion": cr["metadata"]["resourceVersion"]},
        "spec": {"config": values},
    }
    kube.merge_patch(CR_PATH, patch, retry_safe=True, fieldValidation="Strict")
    log.info("put the CR's values from before the migration back", extra=fields(object=ref))
    return Outcome(
        summary=f"put the values kept in {ref} back into ConnectivityProxy {kyma.CR_REF}",
        diff=rendered,
        changed=True,
    )


def _at_paths(tree: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    """The parts of `tree` at the leaf paths of `shape` (absent ones left out)."""
    found: dict[str, Any] = {}
    for key, value in shape.items():
        if key not in tree:
            continue
        if isinstance(value, dict) and isinstance(tree[key], dict):
            inner = _at_paths(tree[key], value)
            if inner:
                found[key] = inner
        else:
            found[key] = tree[key]
    return found
