"""cp-restore: verify the backups, then bring both ConfigMaps back into kyma-system."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from backup import plan as planning
from backup.core import Outcome
from common import kyma
from common.backups import content_digest
from common.cluster.client import Kube, configmap_path
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


def restore(kube: Kube, settings: Settings) -> Outcome:
    """Run the restore; a 409 (the target was created or changed meanwhile, for example by
    the reconciler) means our view is stale: read again and re-plan, a bounded number of times."""
    return replan_on_conflict(
        lambda: _attempt(kube, settings), log=log, what="a backup or its target ConfigMap"
    )


def _attempt(kube: Kube, settings: Settings) -> Outcome:
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
