"""The fleet view in the test loop (README "Fleet view"): promtool checks and unit-tests the
rules; kube-state-metrics v2.20.0 runs against the real apiserver with deploy/monitoring's
config and RBAC (its own ServiceAccount), and for each starting state, built by the state
builders, the chain runs, /metrics shows the series the README documents, the cause is fixed,
the chain runs again, and the series moves to done."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from common import kyma, reasons, record
from common.cr import CR_PATH, annotations_of
from hack.devenv import legacy
from hack.devenv.cluster import REPO, Cluster, ToolResult
from tests.support import chain, states
from tests.support.faultproxy import FaultProxy, Rule, hook
from tests.support.monitoring import (
    RULES,
    RULES_TEST,
    KubeStateMetrics,
    kube_state_metrics,
    tool,
)
from tests.support.rbac import SERVICE_KEY_SECRET

README = REPO / "README.md"


# -- promtool ------------------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    promtool = tool("promtool")
    result = subprocess.run(
        [str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_tests_every_alert() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    cases = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {
        check["alertname"]
        for case in cases
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    quiet = {
        check["alertname"]
        for case in cases
        for check in case.get("alert_rule_test", [])
        if not check.get("exp_alerts")
    }
    assert alerts == fired == quiet, (alerts, fired, quiet)
    promtool = tool("promtool")
    result = subprocess.run(
        [str(promtool), "test", "rules", RULES_TEST.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULES_TEST.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the README is what the tests check ----------------------------------------------------------


def _readme_section() -> str:
    text = README.read_text()
    start = text.index("## Fleet view")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_documents_every_reason_code_and_annotation() -> None:
    section = _readme_section()
    documented = re.findall(
        r"^\| `([A-Z][A-Za-z]+)` \| (done|waiting|blocked|attention) \|", section, re.M
    )
    assert [code for code, _ in documented] == list(reasons.ALL)
    for key in kyma.RECORD_ANNOTATIONS:
        assert f"`{key}`" in section, key
    for series in ("info", "result", "since_timestamp_seconds", "created_timestamp_seconds"):
        assert f"connectivityproxy_migration_{series}" in section, series


# -- kube-state-metrics against the real apiserver ----------------------------------------------


@pytest.fixture(scope="module")
def ksm(
    control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeStateMetrics]:
    with kube_state_metrics(control_plane, Path(tmp_path_factory.mktemp("ksm"))) as found:
        yield found


def _chain(cluster: Cluster, kubeconfig: Path | None = None, **env: str) -> list[ToolResult]:
    """The init containers in order, each through its command line (the record included); a
    failing one ends the run."""
    results = []
    for step in chain.CHAIN:
        results.append(chain.run_in_process(step, kubeconfig or cluster.kubeconfig, env=env))
        if results[-1].exit_code != 0:
            break
    return results


def _record(cluster: Cluster) -> record.Record | None:
    cr = cluster.cr()
    return None if cr is None else record.Record.of(annotations_of(cr))


@dataclass(frozen=True)
class Case:
    """A starting state, what the series say after the chain, and the fix a person makes."""

    name: str
    state: states.State
    step: str | None  # None: no CR, so no record and no series
    result: str
    reason: str
    fix: Callable[[Cluster, states.ClusterEnv], None]
    setup: Callable[[Cluster, states.ClusterEnv], None] | None = None


def _no_fix(_cluster: Cluster, _env: states.ClusterEnv) -> None:
    pass


def _shared_mode(cluster: Cluster, _env: states.ClusterEnv) -> None:
    path = states.configmap_path(states.KYMA, "connectivity-proxy")
    cluster.kube.merge_patch(
        path, {"data": {states.CONFIG_KEY: legacy.shared_mode_config()}}, retry_safe=True
    )


def _create_secret(cluster: Cluster, _env: states.ClusterEnv) -> None:
    cluster.apply([copy.deepcopy(SERVICE_KEY_SECRET)])


def _invalid_yaml(cluster: Cluster, _env: states.ClusterEnv) -> None:
    path = states.configmap_path(states.KYMA, "connectivity-proxy")
    cluster.kube.merge_patch(
        path, {"data": {states.CONFIG_KEY: "servers: [unclosed\n"}}, retry_safe=True
    )


def _original_config(cluster: Cluster, _env: states.ClusterEnv) -> None:
    cluster.apply([states.original_configmaps()["connectivity-proxy"]])


def _module_creates_cr(_cluster: Cluster, env: states.ClusterEnv) -> None:
    env.apply([states.default_cr()])


def _remigrate(_cluster: Cluster, env: states.ClusterEnv) -> None:
    # The remedy the refusal names: the marks off, the chain runs again.
    states.remove_migration_marks(env.kube)


def _namespace_goes(_cluster: Cluster, env: states.ClusterEnv) -> None:
    env.finalize_namespace(kyma.BACKUP_NAMESPACE)


def _migrate_orphaned(cluster: Cluster, _env: states.ClusterEnv) -> None:
    result = chain.run_in_process(chain.MIGRATOR, cluster.kubeconfig, "--migrate-orphaned")
    assert result.exit_code == 0, result.output


S = states.State
CASES = [
    Case(
        "finished chain",
        S("ours:MBC", "kept", "absent", "none", "as-left", "present"),
        "cleaner",
        "done",
        reasons.COMPLETED,
        _no_fix,
    ),
    Case(
        "no CR yet",
        S("none", "deleted", "reconciler", "both", "absent", "present"),
        None,
        "waiting",
        reasons.NO_CUSTOM_RESOURCE,
        _module_creates_cr,
    ),
    Case(
        "shared-mode Secret missing",
        S("none", "kept", "reconciler", "both", "absent", "present"),
        "migrator",
        "blocked",
        reasons.SHARED_MODE_SECRET_MISSING,
        _create_secret,
        setup=_shared_mode,
    ),
    Case(
        "config changed after migration",
        S("ours:M", "kept", "reconciler", "edited", "absent", "present"),
        "backup",
        "blocked",
        reasons.CONFIG_CHANGED_AFTER_MIGRATION,
        _remigrate,
    ),
    Case(
        "backup namespace Terminating",
        S("ours:M", "kept", "reconciler", "both", "terminating", "present"),
        "backup",
        "waiting",
        reasons.BACKUP_NAMESPACE_TERMINATING,
        _namespace_goes,
    ),
    Case(
        "orphaned config",
        S("none", "kept", "absent", "both", "absent", "present"),
        "migrator",
        "attention",
        reasons.ORPHANED_LEGACY_CONFIG,
        _migrate_orphaned,
    ),
    Case(
        "invalid configuration",
        S("none", "kept", "reconciler", "both", "absent", "present"),
        "migrator",
        "blocked",
        reasons.INVALID_CONFIGURATION,
        _original_config,
        setup=_invalid_yaml,
    ),
]


def _assert_series(
    ksm: KubeStateMetrics, cluster: Cluster, step: str, result: str, reason: str
) -> None:
    """The series the README documents, as kube-state-metrics serves them."""
    labels = {"namespace": kyma.NAMESPACE, "name": kyma.CR_NAME}
    info = ksm.wait_for("info", step=step, result=result, reason=reason, **labels)
    assert len(info) == 1 and info[0].value == 1, ksm.series("info")
    assert info[0].labels["customresource_kind"] == "ConnectivityProxy"
    states_ = {s.labels["result"]: s.value for s in ksm.series("result", **labels)}
    assert states_ == {r: float(r == result) for r in record.RESULTS}, states_
    found = _record(cluster)
    assert found is not None and found.result == result
    since = ksm.series("since_timestamp_seconds", **labels)
    stamp = record.parse_time(found.since)
    assert [s.value for s in since] == [stamp], since
    assert len(ksm.series("created_timestamp_seconds", **labels)) == 1


def _build(cluster: Cluster, case: Case) -> states.ClusterEnv:
    env = states.ClusterEnv(cluster)
    env.reset(case.state)
    states.build(env, case.state)
    if case.setup:
        case.setup(cluster, env)
    return env


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_kube_state_metrics_shows_where_each_cluster_stands(
    cluster: Cluster, ksm: KubeStateMetrics, case: Case
) -> None:
    env = _build(cluster, case)
    first = _chain(cluster)
    last = first[-1]
    output = "\n".join(r.output for r in first)
    assert last.exit_code == {"done": 0, "attention": 0, "waiting": 1, "blocked": 3}[case.result]
    assert f"{case.reason}" in output or case.result == "done", output
    if case.step is None:
        assert cluster.cr() is None
        assert "the record is not written: the CR does not exist" in output, output
        assert ksm.series("info") == []
    else:
        found = _record(cluster)
        assert found is not None, output
        assert (found.step, found.result, found.reason) == (case.step, case.result, case.reason)
        _assert_series(ksm, cluster, case.step, case.result, case.reason)
        # Run again, the cause unchanged: since keeps its value.
        _chain(cluster)
        again = _record(cluster)
        assert again is not None and again.since == found.since
    # The person (or the module) fixes the cause; the chain runs again: done.
    case.fix(cluster, env)
    if case.step is None:
        # A CR no step has run on yet: only the time it appeared (the 24-hour alert's input).
        created = ksm.wait_for("created_timestamp_seconds", name=kyma.CR_NAME)
        assert len(created) == 1 and ksm.series("info") == [], ksm.metrics()
    final = _chain(cluster)
    assert [r.exit_code for r in final] == [0, 0, 0], "\n".join(r.output for r in final)
    _assert_series(ksm, cluster, "cleaner", "done", reasons.COMPLETED)
    # A finished chain run again writes nothing.
    before = cluster.cr()
    assert [r.exit_code for r in _chain(cluster)] == [0, 0, 0]
    after = cluster.cr()
    assert before and after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_sigterm_mid_run_shows_as_interrupted_then_done(
    cluster: Cluster, ksm: KubeStateMetrics, fault_proxy: FaultProxy
) -> None:
    """SIGTERM (the kubelet deleting the Pod) while the migrator writes the CR: waiting,
    Interrupted; the container's next run finishes the chain: done."""
    _build(
        cluster,
        Case(
            "sigterm",
            S("none", "kept", "reconciler", "both", "absent", "present"),
            "migrator",
            "waiting",
            reasons.INTERRUPTED,
            _no_fix,
        ),
    )
    pid: list[int] = []

    @contextlib.contextmanager
    def started(found: int) -> Iterator[None]:
        pid.append(found)
        yield

    fault_proxy.add(
        Rule(
            hook(lambda: os.kill(pid[0], signal.SIGTERM)),
            method="PATCH",
            path=re.escape(CR_PATH),
            dry_run=False,
        )
    )
    run = chain.run_process(chain.MIGRATOR, fault_proxy.kubeconfig, started=started)
    assert run.exit_code == 1, run.output
    assert "interrupted by SIGTERM" in run.output, run.output
    found = _record(cluster)
    assert found is not None, run.output
    assert (found.step, found.result, found.reason) == ("migrator", "waiting", "Interrupted")
    _assert_series(ksm, cluster, "migrator", "waiting", reasons.INTERRUPTED)
    final = _chain(cluster)
    assert [r.exit_code for r in final] == [0, 0, 0], "\n".join(r.output for r in final)
    _assert_series(ksm, cluster, "cleaner", "done", reasons.COMPLETED)
