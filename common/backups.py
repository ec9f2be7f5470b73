"""The checks of a backup that the backup step shares with the migrator, the cleaner and
cp-status: whose copy it is, its digests, and the remedies they name (names: common.kyma)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from common import drift, kyma

_KUBECTL_CR = f"{kyma.CRD_NAME} -n {kyma.NAMESPACE} {kyma.CR_NAME}"
RESTART_CHAIN = (
    f"kubectl rollout restart deployment -n {kyma.NAMESPACE} {kyma.OPERATOR_DEPLOYMENT} "
    "(a new operator Pod runs the whole chain, cp-migrator first)"
)
REMIGRATE_REMEDY = (
    "If the changed configuration is the one you want, migrate it again: remove the CR's "
    f"marks (kubectl annotate {_KUBECTL_CR} {kyma.ANNOTATION_MIGRATED}- "
    f"{kyma.ANNOTATION_BACKED_UP}-), then {RESTART_CHAIN}"
)
RESTORE_MIGRATED = (
    "Otherwise put the migrated data back into the ConfigMap from its backup (cp-restore "
    "--force, after cp-restore --dry-run shows the difference)"
)
EDIT_BACK = (
    "Otherwise edit the ConfigMap back to the values the CR holds (the old side of each "
    "change above); there is no backup of it yet that cp-restore could bring back"
)


def remigrate_remedy(backup_holds_migrated: bool) -> str:
    """The remedy of a drift refusal: migrate again, or go back to what was migrated; the
    latter by cp-restore only where a verified backup holds exactly that data."""
    return f"{REMIGRATE_REMEDY}. {RESTORE_MIGRATED if backup_holds_migrated else EDIT_BACK}"


def holds_migrated(migrated: str | None, name: str, backup: Mapping[str, Any] | None) -> bool:
    """Whether `backup` is a verified copy of ours of kyma-system/`name` holding the data
    that was migrated into the CR (`migrated`: its digest, migrated_digest): then cp-restore
    --force puts exactly that back."""
    return (
        backup is not None
        and migrated is not None
        and backup_problem(dict(backup), name) is None
        and content_digest(dict(backup)) == migrated
    )


def is_ours(backup: dict[str, Any]) -> bool:
    return ((backup.get("metadata") or {}).get("labels") or {}).get(
        kyma.BACKUP_LABEL
    ) == kyma.BACKUP_LABEL_VALUE


def backup_problem(backup: dict[str, Any], name: str) -> str | None:
    """Why `backup` is not a verified cp-backup copy of kyma-system/`name`, or None."""
    if not is_ours(backup):
        return (
            f"it was not made by cp-backup (no label {kyma.BACKUP_LABEL}={kyma.BACKUP_LABEL_VALUE})"
        )
    problem = digest_problem(backup)
    if problem:
        return problem
    annotations = (backup.get("metadata") or {}).get("annotations") or {}
    recorded = (
        annotations.get(kyma.SOURCE_NAMESPACE_ANNOTATION),
        annotations.get(kyma.SOURCE_NAME_ANNOTATION),
    )
    if recorded != (kyma.NAMESPACE, name):
        return f"it records its source as {recorded[0]}/{recorded[1]}, not {kyma.NAMESPACE}/{name}"
    return None


def preserved_name(name: str, foreign: dict[str, Any]) -> str:
    """The name a foreign copy of `name` is kept under: stable for the same content, so a
    rerun finds the copy an interrupted run made."""
    return f"{name}-preserved-{content_digest(foreign).removeprefix('sha256:')[:10]}"


def is_preserved(obj: dict[str, Any]) -> bool:
    return kyma.PRESERVED_LABEL in ((obj.get("metadata") or {}).get("labels") or {})


def format_digests(digests: dict[str, str]) -> str:
    """The value of kyma.MIGRATED_DIGESTS_ANNOTATION: `name=sha256:...` pairs, comma-separated."""
    return ",".join(f"{name}={digest}" for name, digest in sorted(digests.items()))


def parse_digests(value: str | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in (value or "").split(","):
        name, sep, digest = pair.strip().partition("=")
        if sep and name and digest:
            found[name] = digest
    return found


def migrated_digest(cr: Mapping[str, Any], name: str) -> str | None:
    """The digest kyma-system/`name` had when it was migrated into the CR; None when the CR
    records none (a migration by the original Go migrator)."""
    annotations = (cr.get("metadata") or {}).get("annotations") or {}
    return parse_digests(annotations.get(kyma.MIGRATED_DIGESTS_ANNOTATION)).get(name)


def drift_diff(cr: dict[str, Any], live: Mapping[str, Any] | None) -> str:
    """The changes of a drifted ConfigMap (common.drift), as lines to append to its problem."""
    lines = drift.changes(cr, dict(live) if live is not None else None)
    if not lines:
        return ""
    return "; what changed (the CR holds → the ConfigMap has now):" + "".join(
        f"\n      {line}" for line in lines
    )


def drift_problem(migrated: str | None, live_digest: str | None, diff: str = "") -> str | None:
    """Why a live source is not what was migrated into the CR (`migrated`: the digest the CR
    records for it, migrated_digest), or None. With `diff` (drift_diff), what changed is said
    instead of the two digests, which tell a person nothing and would crowd the diff out of
    the fleet record's one KiB."""
    if migrated is None or migrated == live_digest:
        return None
    changed = diff or f" (migrated {migrated}, now {live_digest})"
    return f"its data changed after it was migrated into the CR{changed}"


def digest_problem(backup: dict[str, Any]) -> str | None:
    """Why a backup cannot be trusted, or None when its content matches its recorded digest."""
    recorded = ((backup.get("metadata") or {}).get("annotations") or {}).get(
        kyma.BACKUP_DIGEST_ANNOTATION
    )
    if not recorded:
        return f"it has no {kyma.BACKUP_DIGEST_ANNOTATION} annotation"
    actual = content_digest(backup)
    if actual != recorded:
        return f"its content digest {actual} differs from the recorded {recorded}"
    return None


def format_missing(sources: list[str]) -> str:
    """The value of kyma.MISSING_SOURCES_ANNOTATION: the missing source names, comma-separated."""
    return ",".join(sources)


def parse_missing(value: str | None) -> list[str]:
    """The source names recorded in kyma.MISSING_SOURCES_ANNOTATION (none when it is unset)."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def content_digest(configmap: dict[str, Any]) -> str:
    """sha256 of a ConfigMap's canonical content: its data and binaryData, keys sorted."""
    canonical = json.dumps(
        {"data": configmap.get("data") or {}, "binaryData": configmap.get("binaryData") or {}},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- the CR's own values a migration replaced (cp-migrator writes, cp-restore reads) ---------


PLACEHOLDER = "auto-provision"  # what the module's default CR holds until it knows a value


def cr_values_record(values: dict[str, Any], cr: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The ConfigMap that keeps `values` (nested, as under spec.config) of the CR `cr`."""
    import yaml

    meta = cr.get("metadata") or {}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": kyma.CR_VALUES_CONFIGMAP,
            "namespace": kyma.BACKUP_NAMESPACE,
            "labels": {kyma.BACKUP_LABEL: kyma.CR_VALUES_LABEL_VALUE},
            "annotations": {
                kyma.SOURCE_NAMESPACE_ANNOTATION: kyma.NAMESPACE,
                kyma.SOURCE_NAME_ANNOTATION: kyma.CR_NAME,
                kyma.SOURCE_UID_ANNOTATION: str(meta.get("uid", "")),
                kyma.SOURCE_RESOURCE_VERSION_ANNOTATION: str(meta.get("resourceVersion", "")),
                kyma.BACKUP_TIME_ANNOTATION: now,
            },
        },
        "data": {kyma.CR_VALUES_KEY: yaml.safe_dump(values, sort_keys=True)},
    }
    body["metadata"]["annotations"][kyma.BACKUP_DIGEST_ANNOTATION] = content_digest(body)
    return body


def cr_values_problem(record: Mapping[str, Any]) -> str | None:
    """Why a record of the CR's values cannot be trusted, or None."""
    labels = (record.get("metadata") or {}).get("labels") or {}
    if labels.get(kyma.BACKUP_LABEL) != kyma.CR_VALUES_LABEL_VALUE:
        return f"it was not made by cp-migrator (no label {kyma.BACKUP_LABEL}=cp-migrator)"
    return digest_problem(dict(record))


def cr_values_of(record: Mapping[str, Any]) -> dict[str, Any]:
    import yaml

    text = (record.get("data") or {}).get(kyma.CR_VALUES_KEY) or "{}"
    found = yaml.safe_load(text)
    return found if isinstance(found, dict) else {}
