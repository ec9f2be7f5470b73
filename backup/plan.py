"""Pure planning of cp-backup and cp-restore: cluster data in, intended changes out. No I/O."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from common import backups as names
from common import cr as crnames
from common import diff
from common.configmap import content_digest
from common.errors import RefusedError

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

CREATE = "create"
UPDATE = "update"
KEEP = "keep"
MISSING = "missing"


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
        return self.verb in (CREATE, UPDATE)


def _ref(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


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


def skip_reason(crd_exists: bool, cr: dict[str, Any] | None) -> str | None:
    """Why cp-backup has nothing to do, or None when it should run."""
    cr_name = _ref(crnames.NAMESPACE, crnames.NAME)
    if not crd_exists:
        return f"the CRD {crnames.CRD_NAME} is not installed; nothing to back up"
    if cr is None:
        return f"ConnectivityProxy {cr_name} does not exist; nothing to back up"
    if crnames.is_marked(cr, crnames.ANNOTATION_BACKED_UP):
        return f"{cr_name} is already backed up ({crnames.ANNOTATION_BACKED_UP})"
    if not crnames.is_marked(cr, crnames.ANNOTATION_MIGRATED):
        return (
            f"{cr_name} is not migrated yet (no {crnames.ANNOTATION_MIGRATED}); "
            "there is nothing to back up yet"
        )
    return None


@dataclass(frozen=True)
class BackupInputs:
    """What `observe` read; plain data only. Both maps are keyed by ConfigMap name."""

    sources: dict[str, dict[str, Any] | None]
    backups: dict[str, dict[str, Any] | None]
    namespace_exists: bool
    now: str  # RFC 3339, the time recorded on new or updated backups


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

    def mark_annotations(self) -> dict[str, str]:
        values = {crnames.ANNOTATION_BACKED_UP: "true"}
        if self.missing:
            values[names.MISSING_SOURCES_ANNOTATION] = names.format_missing(self.missing)
        return values


def backup_content(source: dict[str, Any], now: str) -> dict[str, Any]:
    """The content of the backup of `source`: its own labels and annotations (without
    kubectl's last-applied copy) plus ours, recording where it came from and its digest."""
    meta = source["metadata"]
    content = content_of(source, ignore=(LAST_APPLIED,))
    content["metadata"]["labels"][names.LABEL] = names.LABEL_VALUE
    content["metadata"]["annotations"].update(
        {
            names.SOURCE_NAMESPACE_ANNOTATION: meta["namespace"],
            names.SOURCE_NAME_ANNOTATION: meta["name"],
            names.SOURCE_UID_ANNOTATION: meta["uid"],
            names.SOURCE_RESOURCE_VERSION_ANNOTATION: meta["resourceVersion"],
            names.TIME_ANNOTATION: now,
            names.DIGEST_ANNOTATION: content_digest(source),
        }
    )
    return content


def is_ours(obj: dict[str, Any]) -> bool:
    return _metadata(obj, "labels").get(names.LABEL) == names.LABEL_VALUE


def plan_backup(inputs: BackupInputs) -> BackupPlan:
    actions: list[Action] = []
    expected: dict[str, str] = {}
    missing: list[str] = []
    for name in names.SOURCES:
        source = inputs.sources.get(name)
        existing = inputs.backups.get(name)
        target = _ref(names.NAMESPACE, name)
        source_ref = _ref(names.SOURCE_NAMESPACE, name)
        if existing is not None and not is_ours(existing):
            raise RefusedError(
                f"ConfigMap {target} exists but was not made by cp-backup (it lacks the label "
                f"{names.LABEL}={names.LABEL_VALUE}); refusing to overwrite it. Move it out of "
                f"the way, then run cp-backup again"
            )
        if source is None:
            missing.append(name)
            kept = " (an earlier backup of it is kept)" if existing is not None else ""
            actions.append(
                Action(MISSING, target, f"the source {source_ref} does not exist{kept}", existing)
            )
            continue
        expected[name] = content_digest(source)
        if existing is None:
            after = _with_content(
                _skeleton(names.NAMESPACE, name), backup_content(source, inputs.now)
            )
            actions.append(Action(CREATE, target, f"copy of {source_ref}", None, after))
            continue
        # The time of an earlier backup is kept when nothing else differs: same source object
        # (uid, resourceVersion), same digest, same content.
        earlier_time = _metadata(existing, "annotations").get(names.TIME_ANNOTATION, inputs.now)
        if content_of(existing) == backup_content(source, earlier_time):
            actions.append(
                Action(KEEP, target, f"already a verified copy of {source_ref}", existing)
            )
            continue
        after = _with_content(existing, backup_content(source, inputs.now))
        actions.append(
            Action(
                UPDATE,
                target,
                f"an earlier backup that differs from {source_ref} (updated in place)",
                existing,
                after,
            )
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
    problem = names.digest_problem(backup)
    if problem:
        return problem
    recorded = _metadata(backup, "annotations").get(names.DIGEST_ANNOTATION)
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


def backup_problem(backup: dict[str, Any], name: str) -> str | None:
    """Why a backup must not be restored, or None when it is intact."""
    if not is_ours(backup):
        return f"it was not made by cp-backup (no label {names.LABEL}={names.LABEL_VALUE})"
    problem = names.digest_problem(backup)
    if problem:
        return problem
    annotations = _metadata(backup, "annotations")
    recorded = (
        annotations.get(names.SOURCE_NAMESPACE_ANNOTATION),
        annotations.get(names.SOURCE_NAME_ANNOTATION),
    )
    if recorded != (names.SOURCE_NAMESPACE, name):
        source = f"{recorded[0]}/{recorded[1]}"
        return f"it records its source as {source}, not {names.SOURCE_NAMESPACE}/{name}"
    return None


def restored_content(backup: dict[str, Any]) -> dict[str, Any]:
    """The original object's content: the backup without its own label and annotations."""
    content = content_of(backup, ignore=names.OWN_ANNOTATIONS)
    content["metadata"]["labels"].pop(names.LABEL, None)
    return content


def plan_restore(inputs: RestoreInputs) -> list[Action]:
    """Every backup is verified before anything is planned; a refusal changes nothing."""
    corrupt = [
        f"ConfigMap {_ref(names.NAMESPACE, name)}: {problem}"
        for name in names.SOURCES
        if (backup := inputs.backups.get(name)) is not None
        and (problem := backup_problem(backup, name))
    ]
    if corrupt:
        raise RefusedError("refusing to restore: a backup cannot be trusted", details=corrupt)
    if all(inputs.backups.get(name) is None for name in names.SOURCES):
        raise RefusedError(
            f"there is no backup in namespace {names.NAMESPACE} "
            f"(looked for {', '.join(names.SOURCES)}); nothing to restore"
        )
    actions: list[Action] = []
    conflicts: list[str] = []
    for name in names.SOURCES:
        backup = inputs.backups.get(name)
        current = inputs.targets.get(name)
        target = _ref(names.SOURCE_NAMESPACE, name)
        backup_ref = _ref(names.NAMESPACE, name)
        if backup is None:
            actions.append(Action(MISSING, target, f"there is no backup {backup_ref}", current))
            continue
        wanted = restored_content(backup)
        if current is None:
            after = _with_content(_skeleton(names.SOURCE_NAMESPACE, name), wanted)
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
            "overwrite them with the backup\n" + "\n".join(conflicts).rstrip("\n")
        )
    return actions
