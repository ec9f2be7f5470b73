"""The record on the real apiserver: what it costs (one request per run, none when unchanged),
that it never fights the step marks, the Warning Event with its repeats folded, and that a
failure to write it changes nothing else (README "Fleet view")."""

from __future__ import annotations

from common import kyma, reasons, record
from common.cluster.client import resource_path
from common.cr import annotations_of
from hack import record_cost
from hack.devenv import legacy
from hack.devenv.cluster import AuditWindow, Cluster
from tests.support import chain

EVENTS = resource_path("", "v1", "events", kyma.NAMESPACE)


def _cr_writes(window: AuditWindow, tool: str) -> list[dict[str, object]]:
    return list(record_cost.cr_patches(record_cost.tool_requests(window, tool)))


def test_the_record_costs_one_request_per_run_and_none_when_unchanged(cluster: Cluster) -> None:
    legacy.fresh_install(cluster)
    for step, tool in zip(chain.CHAIN, ("migrator", "backup", "cleaner"), strict=True):
        window = AuditWindow(cluster)
        result = chain.run_in_process(step, cluster.kubeconfig)
        assert result.exit_code == 0, result.output
        if window.available:
            # The step's mark and the record: two writes of the CR, nothing more.
            assert len(_cr_writes(window, tool)) == 2, result.output
        found = record.Record.of(annotations_of(cluster.cr() or {}))
        assert found is not None and (found.step, found.result) == (tool, "done")
    cr = cluster.cr()
    assert cr is not None
    for step in chain.CHAIN:
        window = AuditWindow(cluster)
        assert chain.run_in_process(step, cluster.kubeconfig).exit_code == 0
        if window.available:
            assert _cr_writes(window, step.name.removeprefix("cp-")) == []
    again = cluster.cr()
    assert again and again["metadata"]["resourceVersion"] == cr["metadata"]["resourceVersion"]


def _blocked_install(cluster: Cluster) -> None:
    """The legacy configuration in shared tenant mode, its service-key Secret missing."""
    legacy.fresh_install(cluster)
    cluster.kube.merge_patch(
        resource_path("", "v1", "configmaps", kyma.NAMESPACE, "connectivity-proxy"),
        {"data": {"connectivity-proxy-config.yml": legacy.shared_mode_config()}},
        retry_safe=True,
    )


def test_a_blocked_step_is_one_warning_event_counting_its_repeats(cluster: Cluster) -> None:
    _blocked_install(cluster)
    for _ in range(3):  # the kubelet restarting the failed init container
        result = chain.run_in_process(chain.MIGRATOR, cluster.kubeconfig)
        assert result.exit_code == 3, result.output
    cr = cluster.cr()
    assert cr is not None
    warnings = [
        event
        for event in cluster.kube.list(EVENTS)
        if event.get("type") == "Warning"
        and event["involvedObject"].get("uid") == cr["metadata"]["uid"]
    ]
    assert len(warnings) == 1, warnings
    event = warnings[0]
    assert event["reason"] == reasons.SHARED_MODE_SECRET_MISSING
    assert event["count"] == 3
    assert event["source"]["component"] == "cp-migrator"
    assert "tenantMode is shared" in event["message"]
    found = record.Record.of(annotations_of(cr))
    assert found is not None
    assert (found.step, found.result, found.reason) == (
        "migrator",
        "blocked",
        reasons.SHARED_MODE_SECRET_MISSING,
    )


def test_a_dry_run_leaves_no_record(cluster: Cluster) -> None:
    legacy.fresh_install(cluster)
    assert chain.run_in_process(chain.MIGRATOR, cluster.kubeconfig, "--dry-run").exit_code == 0
    assert record.Record.of(annotations_of(cluster.cr() or {})) is None


def test_the_termination_message_names_the_reason(cluster: Cluster, tmp_path: object) -> None:
    from pathlib import Path

    target = Path(str(tmp_path)) / "termination-log"
    _blocked_install(cluster)
    result = chain.run_in_process(
        chain.MIGRATOR, cluster.kubeconfig, env={record.TERMINATION_LOG_ENV: str(target)}
    )
    assert result.exit_code == 3
    text = target.read_text()
    assert text.startswith(f"{reasons.SHARED_MODE_SECRET_MISSING}: tenantMode is shared"), text
    assert text.count("\n") == 1
