"""Drift shown as a diff (issue 22), on the real control plane: the legacy ConfigMap changed
after it was migrated (a Kyma reconciler upgrade rendered it again). The refusal names the keys
and the fields that changed, old -> new, redacted, and offers only remedies that work in that
state; each one offered is carried out here."""

from __future__ import annotations

import copy

from common import kyma
from common.cluster.client import resource_path
from common.cr import annotations_of, is_marked
from hack.devenv import legacy
from hack.devenv.cluster import Cluster
from tests.support import states

MIGRATOR = "migrator.cli:main"
BACKUP = "backup.cli:backup_main"
CLEANER = "cleaner.cli:main"
RESTORE = "backup.cli:restore_main"
STATUS = "cleaner.status_cli:main"
KYMA = "kyma-system"
CHANGE = 'field highAvailabilityMode: "off" → "path"'


def config_path() -> str:
    return resource_path("", "v1", "configmaps", KYMA, "connectivity-proxy")


def run_ok(cluster: Cluster, *steps: str) -> None:
    for step in steps:
        result = cluster.run(step)
        assert result.exit_code == 0, result.output


def upgrade(cluster: Cluster) -> None:
    states.reconciler_upgrade(states.ClusterEnv(cluster))


def test_before_the_backup_the_refusal_shows_the_diff_and_no_restore(cluster: Cluster) -> None:
    legacy.install(cluster)
    run_ok(cluster, MIGRATOR)
    original = cluster.configmap(KYMA, "connectivity-proxy")
    assert original is not None
    upgrade(cluster)
    result = cluster.run(BACKUP)
    assert result.exit_code == 3, result.output
    assert "ConfigMap kyma-system/connectivity-proxy: its data changed" in result.output
    assert f"key connectivity-proxy-config.yml: {CHANGE}" in result.output
    # Only the change is named, not the reformatted rest.
    assert "externalHost" not in result.output
    # The fleet record's one KiB carries the change itself (digests would crowd it out).
    message = annotations_of(cluster.cr() or {})[kyma.ANNOTATION_MESSAGE]
    assert CHANGE in message, message
    # cp-migrator --dry-run shows the same change (a real run has nothing to do).
    dry = cluster.run(MIGRATOR, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"key connectivity-proxy-config.yml: {CHANGE}" in dry.output
    # No backup exists yet: cp-restore --force is not offered; editing back is.
    assert "cp-restore --force" not in result.output
    assert "edit the ConfigMap back to the values the CR holds" in result.output
    # That remedy, carried out: the value the CR holds goes back.
    current = cluster.configmap(KYMA, "connectivity-proxy")
    assert current is not None
    cluster.kube.merge_patch(
        config_path(), {"data": copy.deepcopy(original["data"])}, retry_safe=True
    )
    run_ok(cluster, BACKUP, CLEANER)


def test_before_the_backup_the_remigration_remedy_works(cluster: Cluster) -> None:
    legacy.install(cluster)
    run_ok(cluster, MIGRATOR)
    upgrade(cluster)
    result = cluster.run(BACKUP)
    assert result.exit_code == 3, result.output
    assert "connectivityproxy.sap.com/migrated- connectivityproxy.sap.com/backed-up-" in (
        result.output
    )
    states.remove_migration_marks(cluster.kube)
    run_ok(cluster, MIGRATOR, BACKUP, CLEANER)
    cr = cluster.cr()
    assert cr and cr["spec"]["config"]["highAvailabilityMode"] == "path"


def test_after_the_backup_the_cleaner_shows_the_diff_and_cp_restore_force_works(
    cluster: Cluster,
) -> None:
    legacy.install(cluster)
    run_ok(cluster, MIGRATOR, BACKUP)
    upgrade(cluster)
    result = cluster.run(CLEANER)
    assert result.exit_code == 3, result.output
    assert f"key connectivity-proxy-config.yml: {CHANGE}" in result.output
    # cp-status shows the same change, with the same remedies.
    status = cluster.run(STATUS)
    assert f"key connectivity-proxy-config.yml: {CHANGE}" in status.output, status.output
    assert "cp-restore --force" in status.output
    # A verified backup holds what was migrated: cp-restore --force puts it back.
    assert "cp-restore --force" in result.output
    dry = cluster.run(RESTORE, "--dry-run")
    assert dry.exit_code == 3 and "highAvailabilityMode" in dry.output, dry.output
    forced = cluster.run(RESTORE, "--force")
    assert forced.exit_code == 0, forced.output
    run_ok(cluster, CLEANER)
    cr = cluster.cr()
    assert cr and is_marked(cr, kyma.ANNOTATION_CLEANED)
    assert cr["spec"]["config"]["highAvailabilityMode"] == "off"
    assert cluster.configmap(kyma.BACKUP_NAMESPACE, "connectivity-proxy") is not None
