"""Pure planning of cp-backup and cp-restore: no cluster."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from typing import Any

import pytest

from backup import plan as planning
from common import kyma
from common.backups import (
    backup_problem,
    content_digest,
    digest_problem,
    format_digests,
    parse_missing,
    preserved_name,
)
from common.cr import skip_reason
from common.errors import RefusedError

NOW = "2025-01-02T03:04:05Z"
LATER = "2025-01-02T04:00:00Z"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def source(name: str = "connectivity-proxy", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "kyma-system",
            "uid": f"uid-{name}",
            "resourceVersion": "100",
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "generation": 1,
            "managedFields": [{"manager": "kubectl"}],
            "ownerReferences": [{"kind": "Thing", "name": "x", "uid": "u"}],
            "labels": {"app": "connectivity-proxy"},
            "annotations": {"note": "keep", LAST_APPLIED: "{}"},
        },
        "data": data or {"key": "value"},
        "binaryData": {"blob": "AAEC"},
    }


def sources() -> dict[str, dict[str, Any] | None]:
    return {name: source(name) for name in kyma.SOURCES}


def inputs(
    found: dict[str, dict[str, Any] | None] | None = None,
    backups: dict[str, dict[str, Any] | None] | None = None,
    namespace_exists: bool = True,
    now: str = NOW,
) -> planning.BackupInputs:
    return planning.BackupInputs(
        sources=sources() if found is None else found,
        backups=backups or {},
        namespace_exists=namespace_exists,
        now=now,
    )


def stored(body: dict[str, Any] | None, resource_version: str = "7") -> dict[str, Any]:
    """`body` as the apiserver would return it."""
    assert body is not None
    obj = copy.deepcopy(body)
    obj["metadata"].update({"uid": "backup-uid", "resourceVersion": resource_version})
    return obj


def first_backups() -> dict[str, dict[str, Any] | None]:
    plan = planning.plan_backup(inputs())
    return {a.after["metadata"]["name"]: stored(a.after) for a in plan.writes if a.after}


# -- preconditions -----------------------------------------------------------------------------


def cr(**annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": "connectivity-proxy", "annotations": annotations}}


@pytest.mark.parametrize(
    ("crd", "the_cr", "expected"),
    [
        (False, None, "CRD connectivityproxies.connectivityproxy.sap.com is not installed"),
        (True, None, "does not exist"),
        (True, cr(), "not migrated yet"),
        (True, cr(**{"connectivityproxy.sap.com/migrated": "false"}), "not migrated yet"),
    ],
)
def test_skip_reasons(crd: bool, the_cr: dict[str, Any] | None, expected: str) -> None:
    reason = skip_reason(crd, the_cr, step="back up")
    assert reason is not None and expected in reason


def test_a_migrated_cr_is_backed_up() -> None:
    assert (
        skip_reason(True, cr(**{"connectivityproxy.sap.com/migrated": "true"}), step="back up")
        is None
    )


# -- backup --------------------------------------------------------------------------------


def test_first_backup_creates_the_namespace_and_both_copies() -> None:
    plan = planning.plan_backup(inputs(namespace_exists=False))
    assert plan.create_namespace
    assert [(a.verb, a.object) for a in plan.actions] == [
        ("create", "connectivity-proxy-backup/connectivity-proxy"),
        ("create", "connectivity-proxy-backup/connectivity-proxy-info"),
    ]
    assert plan.missing == []
    assert plan.mark_annotations() == {
        "connectivityproxy.sap.com/backed-up": "true",
        kyma.MISSING_SOURCES_ANNOTATION: None,  # a stale list is removed
    }


def test_a_copy_keeps_content_and_drops_server_fields() -> None:
    plan = planning.plan_backup(inputs())
    body = plan.actions[0].after
    assert body is not None
    meta = body["metadata"]
    assert meta["namespace"] == kyma.BACKUP_NAMESPACE
    assert meta["name"] == "connectivity-proxy"
    for dropped in (
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "ownerReferences",
        "generation",
    ):
        assert dropped not in meta
    assert body["data"] == {"key": "value"}
    assert body["binaryData"] == {"blob": "AAEC"}
    assert meta["labels"] == {
        "app": "connectivity-proxy",
        kyma.BACKUP_LABEL: kyma.BACKUP_LABEL_VALUE,
    }
    annotations = meta["annotations"]
    assert LAST_APPLIED not in annotations
    assert annotations["note"] == "keep"
    assert annotations[kyma.SOURCE_NAMESPACE_ANNOTATION] == "kyma-system"
    assert annotations[kyma.SOURCE_NAME_ANNOTATION] == "connectivity-proxy"
    assert annotations[kyma.SOURCE_UID_ANNOTATION] == "uid-connectivity-proxy"
    assert annotations[kyma.SOURCE_RESOURCE_VERSION_ANNOTATION] == "100"
    assert annotations[kyma.BACKUP_TIME_ANNOTATION] == NOW
    assert annotations[kyma.BACKUP_DIGEST_ANNOTATION] == content_digest(source())
    assert digest_problem(body) is None
    assert plan.expected_digests["connectivity-proxy"] == content_digest(source())


def test_an_intact_earlier_backup_is_kept_with_its_time() -> None:
    plan = planning.plan_backup(inputs(backups=first_backups(), now=LATER))
    assert [a.verb for a in plan.actions] == ["keep", "keep"]
    assert plan.writes == []
    assert not plan.create_namespace


@pytest.mark.parametrize(
    "change",
    ["data", "binaryData", "label", "annotation", "source-uid", "source-version", "digest"],
)
def test_an_earlier_backup_that_differs_is_updated_in_place(change: str) -> None:
    backups = first_backups()
    earlier = backups["connectivity-proxy"]
    assert earlier is not None
    meta = earlier["metadata"]
    if change == "data":
        earlier["data"]["key"] = "old"
    elif change == "binaryData":
        del earlier["binaryData"]
    elif change == "label":
        meta["labels"]["extra"] = "x"
    elif change == "annotation":
        del meta["annotations"]["note"]
    elif change == "source-uid":
        meta["annotations"][kyma.SOURCE_UID_ANNOTATION] = "another"
    elif change == "source-version":
        meta["annotations"][kyma.SOURCE_RESOURCE_VERSION_ANNOTATION] = "99"
    else:
        meta["annotations"][kyma.BACKUP_DIGEST_ANNOTATION] = "sha256:0"
    plan = planning.plan_backup(inputs(backups=backups, now=LATER))
    if change in ("data", "binaryData", "digest"):
        # Its content no longer matches its digest: someone changed it, so it is kept first.
        preserve, *rest = plan.actions
        assert preserve.verb == "preserve"
        plan = dataclasses.replace(plan, actions=rest)
    update, keep = plan.actions
    assert (update.verb, keep.verb) == ("update", "keep")
    assert update.after is not None
    # In place: the update carries the earlier object's resourceVersion and uid (preconditions).
    assert update.after["metadata"]["resourceVersion"] == "7"
    assert update.after["metadata"]["uid"] == "backup-uid"
    assert update.after["metadata"]["annotations"][kyma.BACKUP_TIME_ANNOTATION] == LATER
    assert planning.content_of(update.after) == planning.backup_content(source(), LATER)


def test_only_one_earlier_backup_gets_the_other_created() -> None:
    backups = first_backups()
    del backups["connectivity-proxy-info"]
    plan = planning.plan_backup(inputs(backups=backups))
    assert [a.verb for a in plan.actions] == ["keep", "create"]


def test_a_missing_source_is_recorded() -> None:
    found = sources()
    found["connectivity-proxy-info"] = None
    plan = planning.plan_backup(inputs(found=found))
    assert [a.verb for a in plan.actions] == ["create", "missing"]
    assert plan.missing == ["connectivity-proxy-info"]
    assert "connectivity-proxy-info" not in plan.expected_digests
    assert plan.mark_annotations() == {
        "connectivityproxy.sap.com/backed-up": "true",
        kyma.MISSING_SOURCES_ANNOTATION: "connectivity-proxy-info",
    }
    assert parse_missing(plan.mark_annotations()[kyma.MISSING_SOURCES_ANNOTATION]) == [
        "connectivity-proxy-info"
    ]


def test_an_earlier_backup_of_a_now_missing_source_is_kept() -> None:
    found = sources()
    found["connectivity-proxy"] = None
    plan = planning.plan_backup(inputs(found=found, backups=first_backups()))
    missing = plan.actions[0]
    assert missing.verb == "missing" and "kept" in missing.reason
    assert plan.writes == []


def test_a_copy_another_tool_made_is_preserved_then_replaced_by_ours() -> None:
    backups = first_backups()
    foreign = backups["connectivity-proxy"]
    assert foreign is not None
    # As the original backup.sh leaves it: the source's labels and annotations, kubectl's
    # last-applied copy, no provenance of ours.
    del foreign["metadata"]["labels"][kyma.BACKUP_LABEL]
    foreign["metadata"]["annotations"] = {LAST_APPLIED: "{}", "note": "keep"}
    plan = planning.plan_backup(inputs(backups=backups, now=LATER))
    preserve, update, keep = plan.actions
    assert (preserve.verb, update.verb, keep.verb) == ("preserve", "update", "keep")
    assert preserve.after is not None and update.after is not None
    kept_name = preserved_name("connectivity-proxy", foreign)
    assert preserve.after["metadata"]["name"] == kept_name
    assert preserve.after["data"] == foreign["data"]
    labels = preserve.after["metadata"]["labels"]
    assert labels[kyma.PRESERVED_LABEL] == "connectivity-proxy" and kyma.BACKUP_LABEL not in labels
    assert preserve.after["metadata"]["annotations"][LAST_APPLIED] == "{}"
    assert update.after["metadata"]["resourceVersion"] == "7"  # in place, never deleted
    assert backup_problem(stored(update.after), "connectivity-proxy") is None
    # A rerun after the preserved copy landed does not make it again.
    again = planning.plan_backup(
        dataclasses.replace(
            inputs(backups=backups, now=LATER),
            preserved={"connectivity-proxy": stored(preserve.after)},
        )
    )
    assert [a.verb for a in again.actions] == ["keep", "update", "keep"]


def test_a_copy_another_tool_made_of_a_missing_source_is_left_alone() -> None:
    backups = first_backups()
    foreign = backups["connectivity-proxy"]
    assert foreign is not None
    del foreign["metadata"]["labels"][kyma.BACKUP_LABEL]
    found = sources()
    found["connectivity-proxy"] = None
    plan = planning.plan_backup(inputs(found=found, backups=backups))
    assert [a.verb for a in plan.actions] == ["missing", "keep"]


def test_a_done_backup_needs_no_write_and_no_mark_even_when_metadata_moved() -> None:
    backups = first_backups()
    marked = cr(**{"connectivityproxy.sap.com/migrated": "true"})
    marked["metadata"]["annotations"]["connectivityproxy.sap.com/backed-up"] = "true"
    moved = sources()
    for obj in moved.values():
        assert obj is not None
        obj["metadata"]["resourceVersion"] = "200"
        obj["metadata"]["labels"]["touched"] = "by-a-controller"
    plan = planning.plan_backup(
        dataclasses.replace(inputs(found=moved, backups=backups, now=LATER), cr=marked)
    )
    assert plan.writes == [] and not plan.needs_mark(marked)


def test_a_source_changed_after_the_migration_is_refused_with_the_remedy() -> None:
    migrated = cr(
        **{
            "connectivityproxy.sap.com/migrated": "true",
            kyma.MIGRATED_DIGESTS_ANNOTATION: format_digests(
                {"connectivity-proxy": content_digest(source())}
            ),
        }
    )
    changed = sources()
    changed["connectivity-proxy"] = source(key="changed")
    with pytest.raises(RefusedError) as caught:
        planning.plan_backup(dataclasses.replace(inputs(found=changed), cr=migrated))
    assert "connectivityproxy.sap.com/migrated-" in str(caught.value)
    assert "kyma-system/connectivity-proxy" in str(caught.value)
    assert planning.plan_backup(dataclasses.replace(inputs(), cr=migrated)).writes


def test_readback_problems() -> None:
    body = planning.plan_backup(inputs()).actions[0].after
    digest = content_digest(source())
    assert planning.readback_problem(stored(body), digest) is None
    assert planning.readback_problem(None, digest) == "it is missing"
    tampered = stored(body)
    tampered["data"]["key"] = "other"
    assert "differs from the recorded" in str(planning.readback_problem(tampered, digest))
    assert "the source's is" in str(planning.readback_problem(stored(body), "sha256:1"))


def test_render_shows_each_object_and_a_diff() -> None:
    text = planning.render(planning.plan_backup(inputs()).actions)
    assert "create connectivity-proxy-backup/connectivity-proxy: copy of" in text
    assert "+++ connectivity-proxy-backup/connectivity-proxy (planned)" in text
    assert "key: value" in text


# -- restore -------------------------------------------------------------------------------


def restore(
    backups: dict[str, dict[str, Any] | None] | None = None,
    targets: dict[str, dict[str, Any] | None] | None = None,
    force: bool = False,
) -> list[planning.Action]:
    return planning.plan_restore(
        planning.RestoreInputs(
            backups=first_backups() if backups is None else backups,
            targets=targets or {},
            force=force,
        )
    )


def test_restore_creates_absent_configmaps_with_the_original_content() -> None:
    actions = restore()
    assert [(a.verb, a.object) for a in actions] == [
        ("create", "kyma-system/connectivity-proxy"),
        ("create", "kyma-system/connectivity-proxy-info"),
    ]
    body = actions[0].after
    assert body is not None
    assert body["metadata"]["namespace"] == "kyma-system"
    assert "resourceVersion" not in body["metadata"]
    original = planning.content_of(source(), ignore=(LAST_APPLIED,))
    assert planning.content_of(body) == original


def test_restore_keeps_identical_configmaps() -> None:
    targets: dict[str, dict[str, Any] | None] = dict(sources())
    assert [a.verb for a in restore(targets=targets)] == ["keep", "keep"]


def test_restore_refuses_a_changed_configmap_with_a_diff() -> None:
    targets: dict[str, dict[str, Any] | None] = dict(sources())
    changed = source("connectivity-proxy", key="changed")
    targets["connectivity-proxy"] = changed
    with pytest.raises(RefusedError) as refused:
        restore(targets=targets)
    message = str(refused.value)
    assert "kyma-system/connectivity-proxy differs" in message
    assert "--force" in message
    assert "-  key: changed" in message and "+  key: value" in message


def test_restore_with_force_updates_under_a_precondition() -> None:
    targets: dict[str, dict[str, Any] | None] = dict(sources())
    targets["connectivity-proxy"] = source("connectivity-proxy", key="changed")
    update, keep = restore(targets=targets, force=True)
    assert (update.verb, keep.verb) == ("update", "keep")
    assert update.after is not None
    assert update.after["metadata"]["resourceVersion"] == "100"
    assert update.after["metadata"]["uid"] == "uid-connectivity-proxy"
    assert update.after["data"] == {"key": "value"}


@pytest.mark.parametrize("tamper", ["data", "digest", "label", "source"])
def test_restore_refuses_a_tampered_backup_naming_it(tamper: str) -> None:
    backups = first_backups()
    info = backups["connectivity-proxy-info"]
    assert info is not None
    if tamper == "data":
        info["data"]["key"] = "tampered"
    elif tamper == "digest":
        del info["metadata"]["annotations"][kyma.BACKUP_DIGEST_ANNOTATION]
    elif tamper == "label":
        del info["metadata"]["labels"][kyma.BACKUP_LABEL]
    else:
        info["metadata"]["annotations"][kyma.SOURCE_NAME_ANNOTATION] = "connectivity-proxy"
    with pytest.raises(RefusedError, match="connectivity-proxy-backup/connectivity-proxy-info"):
        restore(backups=backups)


def test_restore_without_any_backup_is_refused() -> None:
    with pytest.raises(RefusedError, match="no backup"):
        restore(backups={})


def test_restore_of_one_backup_reports_the_other_missing() -> None:
    backups = first_backups()
    del backups["connectivity-proxy"]
    assert [a.verb for a in restore(backups=backups)] == ["missing", "create"]


def test_the_plan_never_imports_the_kubernetes_client() -> None:
    code = "import sys, backup.plan; sys.exit('kubernetes' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
