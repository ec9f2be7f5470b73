"""Pure planning of cp-backup and cp-restore: cluster data in, intended changes out. No I/O."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from common import backups, diff, kyma, reasons
from common.backups import content_digest
from common.cr import is_marked
from common.errors import RefusedError

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

CREATE = "create"
UPDATE = "update"
KEEP = "keep"
MISSING = "missing"
PRESERVE = "preserve"  # create a copy of a backup cp-backup did not make, under another name
# An immutable copy cannot be updated (422): once its content is kept (preserved, or identical
# to the source), it is deleted under a uid precondition and created again.
REPLACE = "replace"


@dataclass(frozen=True)
class Action:
    """One intended change (or a decision to change nothing) to one ConfigMap."""

    verb: str
    object: str  # namespace/name of the ConfigMap acted on
    reason: str
    before: dict[str, Any] | None = None  # as it is now
    after: dict[str, Any] | None = None  # the body to write (create/update only)

    @property
    def writes(self) -> bool:
        return self.verb in (CREATE, UPDATE, PRESERVE, REPLACE)


def _metadata(obj: dict[str, Any], key: str) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get(key) or {})


def content_of(obj: dict[str, Any] | None, *, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a copy must preserve: labels, annotations (minus `ignore`), data and binaryData."""
    if obj is None:
        return {}
    annotations = {k: v for k, v in _metadata(obj, "annotations").items() if k not in ignore}
    return {
        "metadata": {"labels": _metadata(obj, "labels"), "annotations": annotations},
        "data": dict(obj.get("data") or {}),
        "binaryData": dict(obj.get("binaryData") or {}),
    }


def is_immutable(obj: dict[str, Any] | None) -> bool:
    return bool((obj or {}).get("immutable"))


def _with_content(base: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    """`base` (an object read from the cluster, or a new skeleton) carrying `content`; every
    other field (resourceVersion, uid, finalizers, ...) stays as in `base`."""
    body = copy.deepcopy(base)
    meta = body.setdefault("metadata", {})
    meta["labels"] = copy.deepcopy(content["metadata"]["labels"])
    meta["annotations"] = copy.deepcopy(content["metadata"]["annotations"])
    for key in ("data", "binaryData"):
        if content[key]:
            body[key] = copy.deepcopy(content[key])
        else:
            body.pop(key, None)
    return body


def _skeleton(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
    }


def render(actions: list[Action]) -> str:
    """The plan as people read it: one line per object, and a diff for each write."""
    lines: list[str] = []
    for action in actions:
        lines.append(f"{action.verb} {action.object}: {action.reason}\n")
        if action.writes:
            lines.append(
                diff.unified(
                    content_of(action.before),
                    content_of(action.after),
                    f"{action.object} (now)" if action.before else "/dev/null",
                    f"{action.object} (planned)",
                )
            )
    return "".join(lines)


# -- cp-backup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupInputs:
    """What `observe` read; plain data only. Both maps are keyed by ConfigMap name."""

    sources: dict[str, dict[str, Any] | None]
    backups: dict[str, dict[str, Any] | None]
    namespace_exists: bool
    now: str  # RFC 3339, the time recorded on new or updated backups
    # The CR (its marks, and the digests of what was migrated).
    cr: dict[str, Any] = field(default_factory=dict)
    # Source name -> the copy already kept under preserved_name() (None: none yet).
    preserved: dict[str, dict[str, Any] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class BackupPlan:
    create_namespace: bool
    actions: list[Action]
    # Backup name -> the digest the read-back must find (sources that exist only).
    expected_digests: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def writes(self) -> list[Action]:
        return [action for action in self.actions if action.writes]

    def needs_mark(self, cr: dict[str, Any]) -> bool:
        """Whether the CR must be marked: it is not yet, or this plan writes backups. A done
        backup is not marked twice, also after the cleaner removed its sources."""
        return bool(self.writes) or not is_marked(cr, kyma.ANNOTATION_BACKED_UP)

    def mark_annotations(self) -> dict[str, str | None]:
        """The CR's marks; None removes a stale list of missing sources (merge patch)."""
        return {
            kyma.ANNOTATION_BACKED_UP: "true",
            kyma.MISSING_SOURCES_ANNOTATION: backups.format_missing(self.missing) or None,
        }


def backup_content(source: dict[str, Any], now: str) -> dict[str, Any]:
    """The content of the backup of `source`: its own labels and annotations (without
    kubectl's last-applied copy) plus ours, recording where it came from and its digest."""
    meta = source["metadata"]
    content = content_of(source, ignore=(LAST_APPLIED,))
    content["metadata"]["labels"][kyma.BACKUP_LABEL] = kyma.BACKUP_LABEL_VALUE
    content["metadata"]["annotations"].update(
        {
            kyma.SOURCE_NAMESPACE_ANNOTATION: meta["namespace"],
            kyma.SOURCE_NAME_ANNOTATION: meta["name"],
            kyma.SOURCE_UID_ANNOTATION: meta["uid"],
            kyma.SOURCE_RESOURCE_VERSION_ANNOTATION: meta["resourceVersion"],
            kyma.BACKUP_TIME_ANNOTATION: now,
            kyma.BACKUP_DIGEST_ANNOTATION: content_digest(source),
        }
    )
    return content


def foreign_problem(backup: dict[str, Any]) -> str | None:
    """Why a copy in the backup namespace must be preserved before cp-backup writes its own,
    or None when it is a sound copy of ours."""
    if not backups.is_ours(backup):
        return "cp-backup did not make it (the original backup.sh, or a person)"
    problem = backups.digest_problem(backup)
    return f"it was changed after cp-backup made it ({problem})" if problem else None


def preserved_copy(foreign: dict[str, Any], name: str, reason: str, now: str) -> dict[str, Any]:
    """The copy a foreign backup is kept as: its content, labels and annotations, plus where it
    was found and why it was kept."""
    meta = foreign.get("metadata") or {}
    content = content_of(foreign)
    content["metadata"]["labels"].pop(kyma.BACKUP_LABEL, None)
    content["metadata"]["labels"][kyma.PRESERVED_LABEL] = name
    content["metadata"]["annotations"].update(
        {
            kyma.PRESERVED_FROM_ANNOTATION: kyma.ref(kyma.BACKUP_NAMESPACE, name),
            kyma.PRESERVED_UID_ANNOTATION: str(meta.get("uid", "")),
            kyma.PRESERVED_TIME_ANNOTATION: now,
            kyma.PRESERVED_REASON_ANNOTATION: reason,
            kyma.BACKUP_DIGEST_ANNOTATION: content_digest(foreign),
        }
    )
    body = _with_content(
        _skeleton(kyma.BACKUP_NAMESPACE, backups.preserved_name(name, foreign)), content
    )
    if is_immutable(foreign):
        body["immutable"] = True  # kept as the person protected it
    return body


def preserve_problem(backup: dict[str, Any], source: dict[str, Any]) -> str | None:
    """Why a copy must be kept under another name before cp-backup writes its own: it is not a
    sound copy of ours, or it is an immutable one whose data the source no longer has (it can
    only be replaced, and its content must outlive that). None: nothing to keep."""
    foreign = foreign_problem(backup)
    if foreign:
        return foreign
    if is_immutable(backup) and content_digest(backup) != content_digest(source):
        return (
            "it is immutable and holds data the source no longer has (an earlier migration's); "
            "cp-backup replaces it"
        )
    return None


def replacement(existing: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    """The body that replaces an immutable copy: a new object (no uid, resourceVersion) with
    `content`, immutable again as the person made the one it replaces."""
    meta = existing.get("metadata") or {}
    body = _with_content(_skeleton(kyma.BACKUP_NAMESPACE, str(meta.get("name"))), content)
    body["immutable"] = True
    return body


def plan_backup(inputs: BackupInputs) -> BackupPlan:
    actions: list[Action] = []
    expected: dict[str, str] = {}
    missing: list[str] = []
    drifted: list[str] = []
    restorable: list[bool] = []  # per drifted source: does its backup hold what was migrated
    for name in kyma.SOURCES:
        source = inputs.sources.get(name)
        existing = inputs.backups.get(name)
        target = kyma.ref(kyma.BACKUP_NAMESPACE, name)
        source_ref = kyma.ref(kyma.NAMESPACE, name)
        if source is None:
            missing.append(name)
            kept = " (the copy in the backup namespace is kept as it is)" if existing else ""
            actions.append(
                Action(MISSING, target, f"the source {source_ref} does not exist{kept}", existing)
            )
            continue
        drift = backups.drift_problem(
            backups.migrated_digest(inputs.cr, name),
            content_digest(source),
            backups.drift_diff(inputs.cr, source),
        )
        if drift:
            drifted.append(f"ConfigMap {source_ref}: {drift}")
            restorable.append(
                backups.holds_migrated(backups.migrated_digest(inputs.cr, name), name, existing)
            )
            continue
        expected[name] = content_digest(source)
        if existing is None:
            after = _with_content(
                _skeleton(kyma.BACKUP_NAMESPACE, name), backup_content(source, inputs.now)
            )
            actions.append(Action(CREATE, target, f"copy of {source_ref}", None, after))
            continue
        foreign = preserve_problem(existing, source)
        if foreign:
            kept_as = kyma.ref(kyma.BACKUP_NAMESPACE, backups.preserved_name(name, existing))
            if inputs.preserved.get(name) is None:
                actions.append(
                    Action(
                        PRESERVE,
                        kept_as,
                        f"{target}: {foreign}; kept under this name",
                        None,
                        preserved_copy(existing, name, foreign, inputs.now),
                    )
                )
            else:
                actions.append(Action(KEEP, kept_as, f"already keeps the earlier {target}"))
            if is_immutable(existing):
                actions.append(
                    Action(
                        REPLACE,
                        target,
                        f"immutable, so it is deleted (uid precondition) and created again as "
                        f"cp-backup's verified copy of {source_ref}; its content is kept as "
                        f"{kept_as} first",
                        existing,
                        replacement(existing, backup_content(source, inputs.now)),
                    )
                )
                continue
            after = _with_content(existing, backup_content(source, inputs.now))
            actions.append(
                Action(
                    UPDATE,
                    target,
                    f"becomes cp-backup's verified copy of {source_ref} (the earlier one is "
                    f"kept as {kept_as})",
                    existing,
                    after,
                )
            )
            continue
        # The time of an earlier backup is kept when nothing else differs: same source object
        # (uid, resourceVersion), same digest, same content.
        earlier_time = _metadata(existing, "annotations").get(
            kyma.BACKUP_TIME_ANNOTATION, inputs.now
        )
        if content_of(existing) == backup_content(source, earlier_time):
            actions.append(
                Action(KEEP, target, f"already a verified copy of {source_ref}", existing)
            )
            continue
        if content_digest(existing) == content_digest(source):
            # Only the source's labels, annotations or resourceVersion moved (a controller may
            # touch them at any time): the copy still holds its configuration.
            if is_marked(inputs.cr, kyma.ANNOTATION_BACKED_UP) or is_immutable(existing):
                actions.append(
                    Action(KEEP, target, f"holds the data of {source_ref} (verified)", existing)
                )
                continue
            reason = f"refreshed: {source_ref} changed its metadata, not its data"
        else:
            reason = f"an earlier backup that differs from {source_ref} (updated in place)"
        after = _with_content(existing, backup_content(source, inputs.now))
        actions.append(Action(UPDATE, target, reason, existing, after))
    if drifted:
        raise RefusedError(
            "refusing to back up: the legacy configuration changed after it was migrated into "
            f"ConnectivityProxy {kyma.CR_REF}, so the CR does not hold it; "
            "nothing was changed. " + backups.remigrate_remedy(all(restorable)),
            details=drifted,
            reason=reasons.CONFIG_CHANGED_AFTER_MIGRATION,
        )
    return BackupPlan(
        create_namespace=not inputs.namespace_exists,
        actions=actions,
        expected_digests=expected,
        missing=missing,
    )


def readback_problem(backup: dict[str, Any] | None, expected_digest: str) -> str | None:
    """Why a backup read back after writing it cannot be trusted, or None."""
    if backup is None:
        return "it is missing"
    problem = backups.digest_problem(backup)
    if problem:
        return problem
    recorded = _metadata(backup, "annotations").get(kyma.BACKUP_DIGEST_ANNOTATION)
    if recorded != expected_digest:
        return f"it records digest {recorded}, but the source's is {expected_digest}"
    return None


# -- cp-restore --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreInputs:
    """What `observe` read, keyed by ConfigMap name: the backups and the restore targets."""

    backups: dict[str, dict[str, Any] | None]
    targets: dict[str, dict[str, Any] | None]
    force: bool = False


PRESERVED_ANNOTATIONS = (
    kyma.PRESERVED_FROM_ANNOTATION,
    kyma.PRESERVED_UID_ANNOTATION,
    kyma.PRESERVED_TIME_ANNOTATION,
    kyma.PRESERVED_REASON_ANNOTATION,
)


def restored_content(backup: dict[str, Any]) -> dict[str, Any]:
    """The original object's content: the backup without its own label and annotations (and,
    for a preserved copy, without what marks it as one)."""
    content = content_of(
        backup, ignore=(*kyma.BACKUP_ANNOTATIONS, *PRESERVED_ANNOTATIONS, LAST_APPLIED)
    )
    content["metadata"]["labels"].pop(kyma.BACKUP_LABEL, None)
    content["metadata"]["labels"].pop(kyma.PRESERVED_LABEL, None)
    return content


def restore_problem(backup: dict[str, Any], name: str) -> str | None:
    """Why a backup (or a preserved copy asked for by name) must not be restored, or None."""
    if backups.is_preserved(backup):
        copy_of = _metadata(backup, "labels").get(kyma.PRESERVED_LABEL)
        if copy_of != name:
            return f"it is a preserved copy of {copy_of}, not of {name}"
        return backups.digest_problem(backup)
    return backups.backup_problem(backup, name)


def _backup_ref(backup: dict[str, Any] | None, name: str) -> str:
    """namespace/name of the backup restored for source `name` (a preserved copy's own name)."""
    return kyma.ref(
        kyma.BACKUP_NAMESPACE, str(((backup or {}).get("metadata") or {}).get("name") or name)
    )


def plan_restore(inputs: RestoreInputs) -> list[Action]:
    """Every backup is verified before anything is planned; a refusal changes nothing."""
    corrupt = [
        f"ConfigMap {_backup_ref(backup, name)}: {problem}"
        for name in kyma.SOURCES
        if (backup := inputs.backups.get(name)) is not None
        and (problem := restore_problem(backup, name))
    ]
    if corrupt:
        raise RefusedError(
            "refusing to restore: a backup cannot be trusted",
            details=corrupt,
            reason=reasons.BACKUP_UNTRUSTED,
        )
    if all(inputs.backups.get(name) is None for name in kyma.SOURCES):
        raise RefusedError(
            f"there is no backup in namespace {kyma.BACKUP_NAMESPACE} "
            f"(looked for {', '.join(kyma.SOURCES)}); nothing to restore",
            reason=reasons.NO_BACKUP,
        )
    actions: list[Action] = []
    conflicts: list[str] = []
    for name in kyma.SOURCES:
        backup = inputs.backups.get(name)
        current = inputs.targets.get(name)
        target = kyma.ref(kyma.NAMESPACE, name)
        backup_ref = _backup_ref(backup, name)
        if backup is None:
            actions.append(Action(MISSING, target, f"there is no backup {backup_ref}", current))
            continue
        wanted = restored_content(backup)
        if current is None:
            after = _with_content(_skeleton(kyma.NAMESPACE, name), wanted)
            actions.append(
                Action(CREATE, target, f"absent; restored from {backup_ref}", None, after)
            )
            continue
        # kubectl's last-applied copy is never backed up, so it does not make a difference.
        if content_of(current, ignore=(LAST_APPLIED,)) == wanted:
            actions.append(Action(KEEP, target, f"identical to {backup_ref}", current))
            continue
        after = _with_content(current, wanted)
        if inputs.force:
            actions.append(
                Action(UPDATE, target, f"differs from {backup_ref}; --force", current, after)
            )
            continue
        conflicts.append(
            f"{target} differs from its backup {backup_ref}:\n"
            + diff.unified(
                content_of(current, ignore=(LAST_APPLIED,)),
                wanted,
                f"{target} (now)",
                f"{target} (from the backup)",
            )
        )
    if conflicts:
        raise RefusedError(
            "refusing to restore: the ConfigMaps below exist and differ from their backups; "
            "nothing was changed. Review the difference and run again with --force to "
            "overwrite them with the backup\n" + "\n".join(conflicts).rstrip("\n"),
            reason=reasons.RESTORE_CONFLICT,
        )
    return actions
