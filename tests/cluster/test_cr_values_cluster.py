"""A person's CR edits are kept (issue 22), on the real control plane: values a person set in
the CR's spec.config before the migration, which the legacy configuration replaces, are kept
in ConfigMap connectivity-proxy-backup/connectivity-proxy-cr-before-migration (verified) before
the CR is written; the log and the Event name it; cp-restore --cr-values shows them, and with
--force puts them back."""

from __future__ import annotations

from common import backups, kyma
from common.cluster.client import resource_path
from common.cr import CR_PATH
from hack.devenv import legacy
from hack.devenv.cluster import Cluster

MIGRATOR = "migrator.cli:main"
BACKUP = "backup.cli:backup_main"
CLEANER = "cleaner.cli:main"
RESTORE = "backup.cli:restore_main"
RECORD = kyma.ref(kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP)
PERSONS = {"highAvailabilityMode": "subdomain", "subaccountSubdomain": "persons-subdomain"}


def record(cluster: Cluster) -> dict[str, object] | None:
    return cluster.configmap(kyma.BACKUP_NAMESPACE, kyma.CR_VALUES_CONFIGMAP)


def test_a_persons_cr_values_are_kept_shown_and_put_back_on_request(cluster: Cluster) -> None:
    legacy.install(cluster)
    cluster.ensure_namespace(kyma.BACKUP_NAMESPACE)  # as deploy/namespace.yaml makes it
    # A person configured the module before the migration ran (kubectl edit).
    cluster.kube.merge_patch(CR_PATH, {"spec": {"config": PERSONS}}, retry_safe=True)

    dry = cluster.run(MIGRATOR, "--dry-run")
    assert dry.exit_code == 0 and f"keeping the values it replaces in ConfigMap {RECORD}" in (
        dry.output
    ), dry.output
    assert record(cluster) is None

    result = cluster.run(MIGRATOR)
    assert result.exit_code == 0, result.output
    assert f"kept in ConfigMap {RECORD}" in result.output  # the log line names it
    kept = record(cluster)
    assert kept is not None and backups.cr_values_problem(kept) is None
    assert backups.cr_values_of(kept) == PERSONS
    cr = cluster.cr()
    assert cr and cr["spec"]["config"]["highAvailabilityMode"] == "off"  # the legacy value won
    events = cluster.kube.list(resource_path("", "v1", "events", kyma.NAMESPACE))
    migrated = [e for e in events if e["reason"] == "Migrated"]
    assert migrated and RECORD in migrated[-1]["message"]

    # Shown against the CR now; nothing changed without --force.
    shown = cluster.run(RESTORE, "--cr-values")
    assert shown.exit_code == 0, shown.output
    assert "persons-subdomain" in shown.output and "--force puts them back" in shown.output
    assert cluster.cr() == cr
    # The chain goes on; the record stays beside the backups.
    for step in (BACKUP, CLEANER):
        outcome = cluster.run(step)
        assert outcome.exit_code == 0, outcome.output
    assert record(cluster) == kept

    # Put back on request.
    put = cluster.run(RESTORE, "--cr-values", "--force")
    assert put.exit_code == 0, put.output
    cr = cluster.cr()
    assert cr and {k: cr["spec"]["config"][k] for k in PERSONS} == PERSONS
    again = cluster.run(RESTORE, "--cr-values")
    assert again.exit_code == 0 and "nothing to put back" in again.output, again.output


def test_the_modules_placeholders_are_no_ones_values(cluster: Cluster) -> None:
    legacy.install(cluster)
    cluster.ensure_namespace(kyma.BACKUP_NAMESPACE)
    result = cluster.run(MIGRATOR)
    assert result.exit_code == 0, result.output
    assert record(cluster) is None
    refused = cluster.run(RESTORE, "--cr-values")
    assert refused.exit_code == 3 and f"there is no ConfigMap {RECORD}" in refused.output
