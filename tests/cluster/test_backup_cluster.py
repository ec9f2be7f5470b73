"""cp-backup and cp-restore against the real control plane."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import pytest

from backup import core
from backup.plan import LAST_APPLIED, content_of
from common import backups, kyma
from common.backups import content_digest
from common.cluster.client import Kube, resource_path
from common.cr import CR_PATH, mark
from hack.devenv import legacy
from hack.devenv.cluster import Cluster
from tests.support import chain

MIGRATOR = "migrator.cli:main"
BACKUP = "backup.cli:backup_main"
RESTORE = "backup.cli:restore_main"
BACKED_UP = "connectivityproxy.sap.com/backed-up"
MIGRATED = "connectivityproxy.sap.com/migrated"


def install(cluster: Cluster, **kwargs: Any) -> None:
    """A legacy installation whose info ConfigMap also has binaryData and kubectl's
    last-applied annotation, migrated by the real migrator."""
    info = legacy.legacy_info()
    info["binaryData"] = {"blob.bin": "AAECAwQ="}
    info["metadata"]["annotations"][LAST_APPLIED] = '{"kind":"ConfigMap"}'
    legacy.install(cluster, info=info, **kwargs)
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 0, result.output


def backup_of(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.configmap(kyma.BACKUP_NAMESPACE, name)


def source_of(cluster: Cluster, name: str) -> dict[str, Any] | None:
    return cluster.configmap(kyma.NAMESPACE, name)


def backup_namespace(cluster: Cluster) -> dict[str, Any] | None:
    return cluster.get("", "v1", "namespaces", None, kyma.BACKUP_NAMESPACE)


def resource_versions(cluster: Cluster) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in kyma.SOURCES:
        for namespace in (kyma.BACKUP_NAMESPACE, kyma.NAMESPACE):
            obj = cluster.configmap(namespace, name)
            found[f"{namespace}/{name}"] = obj["metadata"]["resourceVersion"] if obj else None
    cr = cluster.cr()
    found["cr"] = chain.cr_version(cr) if cr else None  # the record aside
    return found


def annotations_of(obj: dict[str, Any] | None) -> dict[str, str]:
    assert obj is not None
    return dict(obj["metadata"].get("annotations") or {})


def unmark(cluster: Cluster) -> None:
    """The state a crash right before the mark leaves: backups written, CR not marked."""
    cluster.kube.merge_patch(
        CR_PATH, {"metadata": {"annotations": {BACKED_UP: None}}}, retry_safe=True
    )


def assert_verified_backup(cluster: Cluster, name: str) -> dict[str, Any]:
    source = source_of(cluster, name)
    stored = backup_of(cluster, name)
    assert source is not None and stored is not None
    assert backups.digest_problem(stored) is None
    recorded = annotations_of(stored)
    assert recorded[kyma.BACKUP_DIGEST_ANNOTATION] == content_digest(source)
    assert recorded[kyma.SOURCE_UID_ANNOTATION] == source["metadata"]["uid"]
    assert (
        recorded[kyma.SOURCE_RESOURCE_VERSION_ANNOTATION] == source["metadata"]["resourceVersion"]
    )
    return stored


# -- preconditions ---------------------------------------------------------------------------


def assert_nothing_written(cluster: Cluster, before: dict[str, str | None]) -> None:
    assert resource_versions(cluster) == before
    assert all(backup_of(cluster, name) is None for name in kyma.SOURCES)


def test_no_crd_is_nothing_to_do(cluster: Cluster) -> None:
    legacy.install(cluster, with_cr=False)
    cluster.delete_crd(kyma.CRD_NAME)
    before = resource_versions(cluster)
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    assert "is not installed" in result.output
    assert_nothing_written(cluster, before)


def test_no_cr_is_nothing_to_do(cluster: Cluster) -> None:
    legacy.install(cluster, with_cr=False)
    before = resource_versions(cluster)
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    assert "kyma-system/connectivity-proxy does not exist" in result.output
    assert_nothing_written(cluster, before)


def test_a_cr_not_migrated_is_nothing_to_do(cluster: Cluster) -> None:
    legacy.install(cluster)
    before = resource_versions(cluster)
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    assert "not migrated yet" in result.output
    assert_nothing_written(cluster, before)


def test_a_cr_already_backed_up_is_nothing_to_do(cluster: Cluster) -> None:
    install(cluster)
    assert cluster.run(BACKUP).exit_code == 0
    before = resource_versions(cluster)
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    assert "already backed up" in result.output
    assert resource_versions(cluster) == before


def test_a_cr_marked_backed_up_without_our_backups_is_backed_up(cluster: Cluster) -> None:
    """The mark alone proves nothing (the original backup.sh marks even when a copy failed,
    and the backup namespace may have been deleted since): the backups are made."""
    install(cluster)
    cr = cluster.cr()
    assert cr is not None
    mark(cluster.kube, cr, {BACKED_UP: "true"})
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    assert "not all verified copies of ours" in result.output
    for name in kyma.SOURCES:
        assert_verified_backup(cluster, name)


# -- backup ----------------------------------------------------------------------------------


def test_backs_up_both_configmaps_verifies_and_marks(cluster: Cluster) -> None:
    install(cluster)
    remove_backup_namespace(cluster)
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    namespace = backup_namespace(cluster)
    assert namespace is not None
    for name in kyma.SOURCES:
        source = source_of(cluster, name)
        stored = assert_verified_backup(cluster, name)
        assert source is not None
        meta = stored["metadata"]
        assert meta["labels"][kyma.BACKUP_LABEL] == kyma.BACKUP_LABEL_VALUE
        assert "ownerReferences" not in meta
        recorded = annotations_of(stored)
        assert recorded[kyma.SOURCE_NAMESPACE_ANNOTATION] == "kyma-system"
        assert recorded[kyma.SOURCE_NAME_ANNOTATION] == name
        assert recorded[kyma.BACKUP_TIME_ANNOTATION].endswith("Z")
        assert LAST_APPLIED not in recorded
        assert stored.get("data") == source.get("data")
        assert stored.get("binaryData") == source.get("binaryData")
        original = content_of(source, ignore=(LAST_APPLIED,))
        copied = content_of(stored, ignore=kyma.BACKUP_ANNOTATIONS)
        copied["metadata"]["labels"].pop(kyma.BACKUP_LABEL)
        assert copied == original
    info = backup_of(cluster, "connectivity-proxy-info")
    assert info is not None and info["binaryData"] == {"blob.bin": "AAECAwQ="}
    cr = cluster.cr()
    assert cr is not None
    assert annotations_of(cr)[BACKED_UP] == "true"
    assert kyma.MISSING_SOURCES_ANNOTATION not in annotations_of(cr)
    assert "verified the backup's digest" in result.output
    events = cluster.kube.request("GET", resource_path("", "v1", "events", "kyma-system"))
    assert any(
        e["reason"] == "BackedUp" and e["involvedObject"]["name"] == "connectivity-proxy"
        for e in events["items"]
    )


def test_a_second_run_changes_nothing(cluster: Cluster) -> None:
    install(cluster)
    assert cluster.run(BACKUP).exit_code == 0
    before = resource_versions(cluster)
    again = cluster.run(BACKUP)
    assert again.exit_code == 0, again.output
    assert "already backed up" in again.output
    assert resource_versions(cluster) == before


def test_a_crash_before_the_mark_keeps_the_backups_and_marks(cluster: Cluster) -> None:
    install(cluster)
    assert cluster.run(BACKUP).exit_code == 0
    unmark(cluster)
    backups_before = {n: backup_of(cluster, n) for n in kyma.SOURCES}
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    for name, before in backups_before.items():
        after = backup_of(cluster, name)
        assert before and after
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert annotations_of(cluster.cr())[BACKED_UP] == "true"


def test_an_interrupted_backup_with_other_content_is_updated_in_place(cluster: Cluster) -> None:
    install(cluster)
    assert cluster.run(BACKUP).exit_code == 0
    unmark(cluster)
    # An earlier attempt copied an older version of the source.
    stale = backup_of(cluster, "connectivity-proxy")
    assert stale is not None
    stale["data"][kyma.CONFIG_KEY] = "tenantMode: dedicated\n"
    stale["metadata"]["annotations"][kyma.BACKUP_DIGEST_ANNOTATION] = content_digest(stale)
    stale["metadata"]["annotations"][kyma.SOURCE_RESOURCE_VERSION_ANNOTATION] = "1"
    stale = cluster.kube.replace(
        resource_path("", "v1", "configmaps", kyma.BACKUP_NAMESPACE, "connectivity-proxy"), stale
    )
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    assert "update" in result.output
    updated = assert_verified_backup(cluster, "connectivity-proxy")
    # Updated in place, never deleted and created again.
    assert updated["metadata"]["uid"] == stale["metadata"]["uid"]
    assert annotations_of(cluster.cr())[BACKED_UP] == "true"


def test_an_interrupted_backup_with_only_one_copy_is_completed(cluster: Cluster) -> None:
    install(cluster)
    assert cluster.run(BACKUP).exit_code == 0
    unmark(cluster)
    kept = backup_of(cluster, "connectivity-proxy")
    assert kept is not None
    cluster.kube.delete(
        resource_path("", "v1", "configmaps", kyma.BACKUP_NAMESPACE, "connectivity-proxy-info")
    )
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    again = assert_verified_backup(cluster, "connectivity-proxy")
    assert again["metadata"]["resourceVersion"] == kept["metadata"]["resourceVersion"]
    assert_verified_backup(cluster, "connectivity-proxy-info")
    assert annotations_of(cluster.cr())[BACKED_UP] == "true"


def test_an_existing_empty_namespace_is_used(cluster: Cluster) -> None:
    install(cluster)
    cluster.ensure_namespace(kyma.BACKUP_NAMESPACE)
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    for name in kyma.SOURCES:
        assert_verified_backup(cluster, name)


def test_a_missing_source_is_a_warning_recorded_on_the_cr(cluster: Cluster) -> None:
    install(cluster)
    cluster.kube.delete(resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy"))
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.output
    assert "kyma-system/connectivity-proxy does not exist" in result.output
    assert backup_of(cluster, "connectivity-proxy") is None
    assert_verified_backup(cluster, "connectivity-proxy-info")
    recorded = annotations_of(cluster.cr())
    assert recorded[BACKED_UP] == "true"
    assert backups.parse_missing(recorded[kyma.MISSING_SOURCES_ANNOTATION]) == [
        "connectivity-proxy"
    ]


def test_a_terminating_backup_namespace_is_exit_1(cluster: Cluster) -> None:
    install(cluster)
    cluster.ensure_namespace(kyma.BACKUP_NAMESPACE)
    cluster.kube.delete(resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE))
    namespace = backup_namespace(cluster)
    assert namespace is not None and namespace["metadata"].get("deletionTimestamp")
    before = resource_versions(cluster)
    result = cluster.run(BACKUP)
    assert result.exit_code == 1, result.output
    assert "connectivity-proxy-backup is being deleted (Terminating" in result.output
    assert resource_versions(cluster) == before
    assert BACKED_UP not in annotations_of(cluster.cr())


def test_a_terminating_backup_namespace_names_what_its_deletion_waits_for(
    cluster: Cluster,
) -> None:
    """The namespace controller says in the namespace's conditions what its deletion waits for
    (a finalizer of some object in it, here); the refusal passes that on, since the namespace's
    own `kubernetes` finalizer says nothing."""
    install(cluster)
    cluster.ensure_namespace(kyma.BACKUP_NAMESPACE)
    path = resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE)
    cluster.kube.delete(path)
    waiting = (
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 "
        "resource instances"
    )
    condition = {
        "type": "NamespaceFinalizersRemaining",
        "status": "True",
        "reason": "SomeFinalizersRemain",
        "message": waiting,
        "lastTransitionTime": "2026-12-06T08:00:00Z",
    }
    cluster.kube.merge_patch(
        f"{path}/status", {"status": {"conditions": [condition]}}, retry_safe=True
    )
    result = cluster.run(BACKUP)
    assert result.exit_code == 1, result.output
    assert f"waiting for: {waiting}" in result.output


def backup_sh_copy(cluster: Cluster, name: str) -> dict[str, Any]:
    """What the original backup.sh leaves: `kubectl get -o yaml | sed | kubectl apply`, so the
    source's labels, annotations and data in the backup namespace under the same name, plus
    kubectl's last-applied-configuration, and no provenance of ours."""
    source = source_of(cluster, name)
    assert source is not None
    meta = source["metadata"]
    copy: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": kyma.BACKUP_NAMESPACE,
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
        },
        "data": dict(source.get("data") or {}),
    }
    if source.get("binaryData"):
        copy["binaryData"] = dict(source["binaryData"])
    copy["metadata"]["annotations"][LAST_APPLIED] = json.dumps(copy, sort_keys=True)
    return copy


def test_a_copy_made_by_backup_sh_is_preserved_then_replaced_by_ours(cluster: Cluster) -> None:
    install(cluster)
    foreign = backup_sh_copy(cluster, "connectivity-proxy-info")
    cluster.apply([foreign])
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    assert_verified_backup(cluster, "connectivity-proxy-info")
    kept = cluster.configmap(
        kyma.BACKUP_NAMESPACE, backups.preserved_name("connectivity-proxy-info", foreign)
    )
    assert kept is not None, result.output
    assert kept["data"] == foreign["data"]
    assert kept["metadata"]["labels"][kyma.PRESERVED_LABEL] == "connectivity-proxy-info"
    assert LAST_APPLIED in kept["metadata"]["annotations"]
    assert annotations_of(cluster.cr())[BACKED_UP] == "true"
    # A rerun keeps both as they are.
    before = resource_versions(cluster)
    assert cluster.run(BACKUP).exit_code == 0
    assert resource_versions(cluster) == before


def remove_backup_namespace(cluster: Cluster) -> None:
    """Earlier tests leave the namespace (the reset keeps namespaces); some tests need none."""
    cluster.kube.delete(resource_path("", "v1", "namespaces", name=kyma.BACKUP_NAMESPACE))
    cluster.finalize_namespace(kyma.BACKUP_NAMESPACE)


def test_dry_run_prints_the_plan_and_changes_nothing(cluster: Cluster) -> None:
    install(cluster)
    remove_backup_namespace(cluster)
    before = resource_versions(cluster)
    result = cluster.run(BACKUP, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "create connectivity-proxy-backup/connectivity-proxy:" in result.stdout
    assert "+++ connectivity-proxy-backup/connectivity-proxy-info (planned)" in result.stdout
    assert "dry run: would create namespace connectivity-proxy-backup" in result.stdout
    assert resource_versions(cluster) == before
    assert backup_namespace(cluster) is None


def test_dry_run_shows_an_update_as_a_diff(cluster: Cluster) -> None:
    install(cluster)
    assert cluster.run(BACKUP).exit_code == 0
    cluster.kube.merge_patch(
        resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy-info"),
        {"data": {"onpremise_proxy_host": "elsewhere"}},
        retry_safe=True,
    )
    # The remedy a changed configuration gets: both marks removed, migrated again.
    cluster.kube.merge_patch(
        CR_PATH,
        {"metadata": {"annotations": {BACKED_UP: None, kyma.ANNOTATION_MIGRATED: None}}},
        retry_safe=True,
    )
    assert cluster.run(MIGRATOR).exit_code == 0
    before = resource_versions(cluster)
    result = cluster.run(BACKUP, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "update connectivity-proxy-backup/connectivity-proxy-info" in result.stdout
    assert "+  onpremise_proxy_host: elsewhere" in result.stdout
    assert resource_versions(cluster) == before


# -- races -----------------------------------------------------------------------------------


class CompetingKube(Kube):
    """A client that lets another pod write first, right before its own first write of a
    matching path, as a second init container racing this one would."""

    def __init__(self, cluster: Cluster, path_part: str, compete: Any) -> None:
        super().__init__(cluster.kube.connection, user_agent="cp-migration-tests-race")
        self.path_part = path_part
        self.compete = compete
        self.competed = False

    def _maybe_compete(self, path: str) -> None:
        if not self.competed and self.path_part in path:
            self.competed = True
            self.compete()

    def create(self, path: str, body: dict[str, Any], **query: str) -> dict[str, Any]:
        self._maybe_compete(path)
        return super().create(path, body, **query)

    def merge_patch(
        self, path: str, patch: dict[str, Any], *, retry_safe: bool, **query: str
    ) -> dict[str, Any]:
        self._maybe_compete(path)
        return super().merge_patch(path, patch, retry_safe=retry_safe, **query)


def test_another_pod_creating_the_same_backup_first_is_a_reread(cluster: Cluster) -> None:
    install(cluster)
    cluster.ensure_namespace(kyma.BACKUP_NAMESPACE)
    collection = resource_path("", "v1", "configmaps", kyma.BACKUP_NAMESPACE)
    others: dict[str, Any] = {}

    def other_pod_writes_first() -> None:
        source = source_of(cluster, "connectivity-proxy")
        assert source is not None
        body = copy.deepcopy(source)
        meta = body["metadata"]
        body["metadata"] = {
            "name": meta["name"],
            "namespace": kyma.BACKUP_NAMESPACE,
            "labels": {**meta["labels"], kyma.BACKUP_LABEL: kyma.BACKUP_LABEL_VALUE},
            "annotations": {
                **meta["annotations"],
                kyma.SOURCE_NAMESPACE_ANNOTATION: "kyma-system",
                kyma.SOURCE_NAME_ANNOTATION: meta["name"],
                kyma.SOURCE_UID_ANNOTATION: meta["uid"],
                kyma.SOURCE_RESOURCE_VERSION_ANNOTATION: meta["resourceVersion"],
                kyma.BACKUP_TIME_ANNOTATION: "2000-01-01T00:00:00Z",
                kyma.BACKUP_DIGEST_ANNOTATION: content_digest(source),
            },
        }
        others["created"] = cluster.kube.create(collection, body)

    kube = CompetingKube(
        cluster, f"/namespaces/{kyma.BACKUP_NAMESPACE}/configmaps", other_pod_writes_first
    )
    outcome = core.backup(kube, core.Settings())
    assert outcome.changed
    kept = assert_verified_backup(cluster, "connectivity-proxy")
    # The other pod's identical backup is kept as it is.
    assert kept["metadata"]["resourceVersion"] == others["created"]["metadata"]["resourceVersion"]
    assert_verified_backup(cluster, "connectivity-proxy-info")
    assert annotations_of(cluster.cr())[BACKED_UP] == "true"


def test_a_cr_that_moves_before_the_mark_is_reread_and_marked(cluster: Cluster) -> None:
    install(cluster)

    def someone_edits_the_cr() -> None:
        cluster.kube.merge_patch(
            CR_PATH, {"metadata": {"labels": {"edited": "yes"}}}, retry_safe=True
        )

    kube = CompetingKube(cluster, CR_PATH, someone_edits_the_cr)
    outcome = core.backup(kube, core.Settings())
    assert outcome.changed
    cr = cluster.cr()
    assert cr is not None
    assert cr["metadata"]["labels"]["edited"] == "yes"
    assert annotations_of(cr)[BACKED_UP] == "true"


def test_two_backups_at_once_both_succeed(cluster: Cluster) -> None:
    install(cluster)
    outcomes: list[object] = []

    def run() -> None:
        kube = Kube(cluster.kube.connection, user_agent="cp-migration-tests-race")
        try:
            outcomes.append(core.backup(kube, core.Settings()))
        except Exception as err:
            outcomes.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(o, core.Outcome) for o in outcomes), outcomes
    for name in kyma.SOURCES:
        assert_verified_backup(cluster, name)
    assert annotations_of(cluster.cr())[BACKED_UP] == "true"


def test_runs_as_a_process(cluster: Cluster) -> None:
    install(cluster)
    result = cluster.run_process("backup")
    assert result.exit_code == 0, result.output
    assert '"object": "kyma-system/connectivity-proxy"' in result.stderr
    assert annotations_of(cluster.cr())[BACKED_UP] == "true"


# -- restore ---------------------------------------------------------------------------------


def originals(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {
        name: content_of(source_of(cluster, name), ignore=(LAST_APPLIED,)) for name in kyma.SOURCES
    }


def backed_up(cluster: Cluster) -> dict[str, dict[str, Any]]:
    install(cluster)
    result = cluster.run(BACKUP)
    assert result.exit_code == 0, result.output
    return originals(cluster)


def delete_sources(cluster: Cluster) -> None:
    for name in kyma.SOURCES:
        cluster.kube.delete(resource_path("", "v1", "configmaps", "kyma-system", name))


def test_restore_round_trip(cluster: Cluster) -> None:
    before = backed_up(cluster)
    assert before["connectivity-proxy-info"]["binaryData"]
    delete_sources(cluster)
    result = cluster.run(RESTORE)
    assert result.exit_code == 0, result.output
    assert originals(cluster) == before
    for name in kyma.SOURCES:
        restored = source_of(cluster, name)
        assert restored is not None
        assert kyma.BACKUP_LABEL not in restored["metadata"]["labels"]
        assert not set(kyma.BACKUP_ANNOTATIONS) & set(annotations_of(restored))
    assert "restored kyma-system/connectivity-proxy, kyma-system/connectivity-proxy-info" in (
        result.stdout
    )


def test_restore_twice_changes_nothing_the_second_time(cluster: Cluster) -> None:
    backed_up(cluster)
    delete_sources(cluster)
    assert cluster.run(RESTORE).exit_code == 0
    before = resource_versions(cluster)
    again = cluster.run(RESTORE)
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.stdout
    assert resource_versions(cluster) == before


def test_restore_over_identical_configmaps_changes_nothing(cluster: Cluster) -> None:
    backed_up(cluster)
    before = resource_versions(cluster)
    result = cluster.run(RESTORE)
    assert result.exit_code == 0, result.output
    assert resource_versions(cluster) == before


def test_restore_dry_run_shows_the_plan_and_changes_nothing(cluster: Cluster) -> None:
    backed_up(cluster)
    delete_sources(cluster)
    before = resource_versions(cluster)
    result = cluster.run(RESTORE, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "create kyma-system/connectivity-proxy: absent; restored from" in result.stdout
    assert "+++ kyma-system/connectivity-proxy-info (planned)" in result.stdout
    assert "dry run: would create kyma-system/connectivity-proxy" in result.stdout
    assert resource_versions(cluster) == before


@pytest.mark.parametrize("tamper", ["data", "digest"])
def test_restore_refuses_a_tampered_backup(cluster: Cluster, tamper: str) -> None:
    backed_up(cluster)
    delete_sources(cluster)
    path = resource_path("", "v1", "configmaps", kyma.BACKUP_NAMESPACE, "connectivity-proxy-info")
    patch: dict[str, Any] = (
        {"data": {"onpremise_proxy_http_port": "1"}}
        if tamper == "data"
        else {"metadata": {"annotations": {kyma.BACKUP_DIGEST_ANNOTATION: "sha256:00"}}}
    )
    cluster.kube.merge_patch(path, patch, retry_safe=True)
    before = resource_versions(cluster)
    result = cluster.run(RESTORE, "--force")
    assert result.exit_code == 3, result.output
    assert "ConfigMap connectivity-proxy-backup/connectivity-proxy-info:" in result.output
    # Verification comes first: the intact backup was not restored either.
    assert resource_versions(cluster) == before


def test_restore_over_a_changed_configmap_needs_force(cluster: Cluster) -> None:
    before = backed_up(cluster)
    path = resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy")
    changed = cluster.kube.merge_patch(
        path,
        {
            "data": {kyma.CONFIG_KEY: "tenantMode: dedicated\n"},
            "metadata": {"labels": {"reinstalled": "by-reconciler"}},
        },
        retry_safe=True,
    )
    versions = resource_versions(cluster)
    refused = cluster.run(RESTORE)
    assert refused.exit_code == 3, refused.output
    assert "kyma-system/connectivity-proxy differs from its backup" in refused.output
    assert "--force" in refused.output
    assert "-    reinstalled: by-reconciler" in refused.output
    assert "+    subaccountSubdomain: example-subdomain" in refused.output
    assert resource_versions(cluster) == versions

    forced = cluster.run(RESTORE, "--force")
    assert forced.exit_code == 0, forced.output
    assert originals(cluster) == before
    restored = source_of(cluster, "connectivity-proxy")
    assert restored is not None
    assert restored["metadata"]["uid"] == changed["metadata"]["uid"]  # updated in place


def test_restore_without_backups_is_refused(cluster: Cluster) -> None:
    install(cluster)
    result = cluster.run(RESTORE)
    assert result.exit_code == 3, result.output
    assert "no backup in namespace connectivity-proxy-backup" in result.output


def test_restore_uses_a_preserved_copy_only_when_asked(cluster: Cluster) -> None:
    install(cluster)
    foreign = backup_sh_copy(cluster, "connectivity-proxy")
    foreign["data"][kyma.CONFIG_KEY] += "# as backup.sh copied it\n"
    cluster.apply([foreign])
    assert cluster.run(BACKUP).exit_code == 0
    kept_name = backups.preserved_name("connectivity-proxy", foreign)
    path = resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy")
    cluster.kube.delete(path)
    # By default the verified backup is restored ...
    plain = cluster.run(RESTORE, "--dry-run")
    assert plain.exit_code == 0, plain.output
    assert "# as backup.sh copied it" not in plain.stdout
    # ... the preserved copy only when named.
    result = cluster.run(RESTORE, "--from-preserved", kept_name)
    assert result.exit_code == 0, result.output
    restored = cluster.configmap("kyma-system", "connectivity-proxy")
    assert restored is not None
    assert restored["data"] == foreign["data"]
    labels = restored["metadata"].get("labels") or {}
    annotations = restored["metadata"].get("annotations") or {}
    assert kyma.PRESERVED_LABEL not in labels and kyma.BACKUP_LABEL not in labels
    assert not [key for key in annotations if key.startswith("backup.connectivityproxy.sap.com/")]
    assert LAST_APPLIED not in annotations
    # A name that is not a preserved copy is refused, naming it.
    wrong = cluster.run(RESTORE, "--from-preserved", "connectivity-proxy")
    assert wrong.exit_code == 3
    assert "connectivity-proxy-backup/connectivity-proxy is not a preserved copy" in wrong.output
